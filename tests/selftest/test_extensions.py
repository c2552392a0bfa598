"""Seeded bugs beyond one layer on the whole world (TP sub-groups, compositions, primitives): each is
caught by the property meant to catch it, and the reference passes the bug's minimal case."""

import time

import pytest
from hypothesis import HealthCheck, find, settings
from hypothesis.errors import NoSuchExample

from conformance.engine.suite import Suite
from conformance.families.embedding import verdict as embedding
from conformance.families.merged import verdict as merged
from conformance.families.mlp import verdict as compositions
from conformance.families.primitives import verdict as primitives
from conformance.families.sequence_parallel import verdict as sequence_parallel
from conformance.families.subgroups import verdict as subgroups
from impls.zoo import EXTENSIONS
from strategies import VARIANTS

VARIANT = {str(v): v for v in VARIANTS}
SEARCH = settings(max_examples=100, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))


def _tp_groups(suite, variant, prop):
    return subgroups.cases(suite, VARIANT[variant]), lambda case: subgroups.violations(suite, case, prop)


def _mlp(suite, _rest, prop):
    return compositions.cases(suite), lambda case: compositions.violations(suite, case, prop)


def _primitives(suite, primitive, prop):
    return primitives.cases(suite, primitive), lambda case: primitives.violations(suite, case, prop)


def _sequence_parallel(suite, kind, prop):
    return sequence_parallel.cases(suite, kind), lambda case: sequence_parallel.violations(suite, case, prop)


def _embedding(suite, _rest, prop):
    return embedding.cases(suite), lambda case: embedding.violations(suite, case, prop)


def _merged(suite, _rest, prop):
    return merged.cases(suite), lambda case: merged.violations(suite, case, prop)


# family (the part of SeededBug.variant before "/") -> (suite, rest, property) -> (strategy, violations)
FAMILIES = {"tp-groups": _tp_groups, "mlp": _mlp, "primitives": _primitives,
            "sequence-parallel": _sequence_parallel, "embedding": _embedding, "merged": _merged}
BUGS = [b for b in EXTENSIONS if b.variant.partition("/")[0] in FAMILIES]
WORLD_SIZES = {"tp-groups": (4, 6)}  # the rest search worlds of 1-4 ranks


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_extension_bug_is_caught_by_its_property(bug, tp_pool, zoo_score):
    family, _, rest = bug.variant.partition("/")
    suite = Suite(bug.name, tp_pool, world_sizes=WORLD_SIZES.get(family, range(1, 5)))
    strategy, violations = FAMILIES[family](suite, rest, bug.caught_by)
    started = time.perf_counter()
    try:
        case = find(strategy, lambda c: bool(violations(c)), settings=SEARCH)
    except NoSuchExample:
        zoo_score["missed"].append(bug.name)
        pytest.fail(f"{bug.name} ({bug.summary}) was not caught by {bug.caught_by} in {SEARCH.max_examples} examples")
    zoo_score["caught"].append(bug.name)
    print(f"{bug.name}: minimal case {case.token()} ({time.perf_counter() - started:.1f} s incl. shrinking)")
    reference = Suite("reference", tp_pool, world_sizes=WORLD_SIZES.get(family, range(1, 5)))
    _, reference_violations = FAMILIES[family](reference, rest, bug.caught_by)
    assert reference_violations(case) == [], "the reference must pass the bug's minimal case"


FAILS_ON_RANK1 = "tests.selftest.fixtures.fails_on_rank1:Impl"


@pytest.mark.parametrize("family,rest", [("merged", ""), ("embedding", ""), ("sequence-parallel", "column")])
def test_construction_failing_on_one_rank_is_a_construction_violation(family, rest, tp_pool):
    """Ranks that built their layer report no error of their own; the verdict names the failed rank."""
    suite = Suite(FAILS_ON_RANK1, tp_pool, world_sizes=[2])
    strategy, violations = FAMILIES[family](suite, rest, "output_matches_the_dense_layer")
    found = violations(find(strategy, lambda c: True, settings=SEARCH))
    assert found, "a layer that cannot be built on rank 1 must not conform"
    text = " ".join(v.message for v in found)
    assert "rank(s) [1]" in text and "rank 1 refuses to build" in text, text
    assert "malformed" not in text, text
