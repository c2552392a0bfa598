"""Seeded bugs beyond one layer on the whole world (TP sub-groups, compositions, primitives): each is
caught by the property meant to catch it, and the reference passes the bug's minimal case. A bug marked
``anchored`` (sequence or loss parallelism, tied embeddings: configs a grade's few draws can miss) must be caught
on its family's anchors alone, which every search meets first (``Family.anchors``)."""

import time

import pytest
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample
from tpconform.engine.suite import Suite
from tpconform.families.registry import families
from tpconform.impls.zoo import EXTENSIONS
from tpconform.strategies import VARIANTS

VARIANT = {str(v): v for v in VARIANTS}
SEARCH = settings(max_examples=100, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
# the first failing case, unshrunk (CI time: a block or model example costs ~0.3 s, and shrinking one took
# 20-60 of them); shrunk only when its likely cause must be read where a user reads it, on the minimal case
FIRST = settings(SEARCH, phases=[Phase.explicit, Phase.reuse, Phase.generate])
BUGS = [b for b in EXTENSIONS if b.variant.partition("/")[0] in families()]
WORLD_SIZES = {"subgroups": (4, 6)}  # the rest search worlds of 1-4 ranks


def _strategy(suite, family: str, rest: str):
    """The family's cases for the variant named after the "/" of a seeded bug's variant."""
    variant = VARIANT.get(rest, rest or None)
    return suite.cases(variant, family)


def test_every_extension_bug_names_a_family_and_one_of_its_properties():
    for bug in EXTENSIONS:
        family, _, rest = bug.variant.partition("/")
        assert family in families(), f"{bug.name}: no family {family!r}"
        assert bug.caught_by in families()[family].properties, f"{bug.name}: {family} has no {bug.caught_by}"


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_extension_bug_is_caught_by_its_property(bug, tp_pool, zoo_score):
    family, _, rest = bug.variant.partition("/")
    suite = Suite(bug.name, tp_pool, world_sizes=WORLD_SIZES.get(family, range(1, 5)))
    started = time.perf_counter()

    def caught(c) -> bool:
        return bool(suite.violations(c, bug.caught_by))

    if bug.anchored:  # where a grade's few draws a variant can miss it: on the family's fixed configs
        variant = VARIANT.get(rest, rest or None)
        anchors = families()[family].anchors(suite, variant)
        case = next((c for c in anchors if caught(c)), None)
        if case is None:
            zoo_score["missed"].append(bug.name)
            pytest.fail(f"{bug.name} ({bug.summary}) was not caught by {bug.caught_by} on {family}'s anchors: "
                        + ", ".join(c.token() for c in anchors))
    else:
        try:
            case = find(_strategy(suite, family, rest), caught, settings=FIRST)
        except NoSuchExample:
            zoo_score["missed"].append(bug.name)
            pytest.fail(f"{bug.name} ({bug.summary}) was not caught by {bug.caught_by} in {SEARCH.max_examples} "
                        "examples")
    zoo_score["caught"].append(bug.name)
    print(f"{bug.name}: caught on {case.token()} ({time.perf_counter() - started:.1f} s)")
    if bug.cause:  # the report names the bug class: on the case found, else on the shrunk case a failure reports
        causes = _causes(suite, family, case, bug.caught_by)
        if not any(bug.cause in c for c in causes):
            case = find(_strategy(suite, family, rest), caught, settings=SEARCH)
            causes = _causes(suite, family, case, bug.caught_by)
        assert any(bug.cause in c for c in causes), f"{bug.name}: no likely cause says {bug.cause!r}: {causes}"
    reference = Suite("reference", tp_pool, world_sizes=WORLD_SIZES.get(family, range(1, 5)))
    assert reference.violations(case, bug.caught_by) == [], "the reference must pass the case that caught the bug"


def _causes(suite, family: str, case, prop: str) -> list[str]:
    ev, found = suite.checked(case, prop)
    return [families()[family].likely_cause(ev, v) or "" for v in found]


FAILS_ON_RANK1 = "tests.selftest.fixtures.fails_on_rank1:Impl"


@pytest.mark.parametrize("family,rest", [("merged", ""), ("embedding", ""), ("sequence_parallel", "column")])
def test_construction_failing_on_one_rank_is_a_construction_violation(family, rest, tp_pool):
    """Ranks that built their layer report no error of their own; the verdict names the failed rank."""
    suite = Suite(FAILS_ON_RANK1, tp_pool, world_sizes=[2])
    prop = next(iter(families()[family].properties))
    found = suite.violations(find(_strategy(suite, family, rest), lambda c: True, settings=SEARCH), prop)
    assert found, "a layer that cannot be built on rank 1 must not conform"
    text = " ".join(v.message for v in found)
    assert "rank(s) [1]" in text and "rank 1 refuses to build" in text, text
    assert "malformed" not in text, text


def test_every_likely_cause_runs_on_a_sequence_parallel_anchor(tp_pool):
    """Under sequence parallelism each rank's output and input grad is its own shard: a likely cause that compared
    the ranks' input grads with each other raised there, and a grade of three block bugs ended as "the search could
    not judge it" on their first anchor. Every violation's cause is now asked and answers (or says nothing)."""
    suite = Suite("bug-block-ffn-gathers-hidden", tp_pool, world_sizes=(2,))
    fam = families()["block"]
    case = next(c for c in fam.anchors(suite, "plan") if c.sequence_parallel)
    ev, found = suite.judged(case, list(fam.properties))
    violations = [v for vs in found.values() for v in vs]
    assert any(v.quantity == "input grad" for v in violations), violations
    for v in violations:
        fam.likely_cause(ev, v)  # raises here if a cause breaks on the shards


def test_an_error_inside_a_likely_cause_costs_the_cause_alone():
    from tpconform.spec.family import Family
    from tpconform.spec.violations import Violation

    class Broken(Family):
        def likely_cause(self, ev, v):
            raise RuntimeError("a symptom the diagnosis did not foresee")

    v = Violation("p", "off by 1", None, "output")
    assert Broken().cause_of(None, v) is None
    with pytest.raises(RuntimeError):
        Broken().likely_cause(None, v)
