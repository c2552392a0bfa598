"""The suite's own mutation test: every seeded bug in ``impls/zoo`` is caught by the property meant to
catch it, for the right reason, within a bounded number of examples; the reference and every
correct built-in impl pass every property on the same kind of cases.

"For the right reason": a bug whose symptom is a wrong result must make the property itself fail
(not a crash), a crash/hang bug must fail as a crash, and where the zoo entry names a cause, the
failure report's "likely cause" line must name it. The search is Hypothesis' own (``find``) over the
suite's strategies (``Suite.cases``), derandomized, without shrinking (``benchmarks/time_to_find.py``
measures shrinking), on world sizes 1–4 with a short pool timeout so a hang costs seconds.
"""

import os
import time

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from tpconform.engine.runner import ImplUnusable
from tpconform.engine.suite import Suite, format_failure
from tpconform.families.linear import verdict
from tpconform.families.linear.case_classes import covering_cases
from tpconform.impls.zoo import ZOO
from tpconform.strategies import VARIANTS
from tpconform.transport.harness import GroupPool

VARIANT = {str(v): v for v in VARIANTS}
MAX_EXAMPLES = 200
SEARCH = settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
POOL_TIMEOUT_S = 6.0  # a hang-type bug costs this much per hanging example
CRASH = ("run", "construction")  # Violation.quantity of an example that did not complete


@pytest.fixture(scope="module")
def pool():
    pool = GroupPool(timeout_s=POOL_TIMEOUT_S)
    yield pool
    pool.close()


def for_the_right_reason(bug, found) -> bool:
    """``found`` (one example's violations) shows ``bug``'s symptom: a crash, or a property failure."""
    return bool(found) and (found[0].quantity in CRASH) == (bug.symptom == "crash")


ONE_LAYER_BUGS = [b for b in ZOO if b.variant in VARIANT]  # "family/variant" entries: test_extensions.py


@pytest.mark.parametrize("bug", ONE_LAYER_BUGS, ids=lambda b: b.name)
def test_seeded_bug_is_caught_by_its_property(bug, pool, zoo_score):
    suite = Suite(bug.name, pool, world_sizes=bug.world_sizes)
    caught: dict = {}

    def is_caught(case) -> bool:
        ev, found = suite.checked(case, bug.caught_by)  # as the property's test runs it
        if for_the_right_reason(bug, found):
            caught[case] = format_failure(ev, bug.caught_by, found, bug.name)
            return True
        return False

    started = time.perf_counter()
    try:  # as the suite runs them: the covering cases of every case class, then the random search
        covering = covering_cases(VARIANT[bug.variant], suite.world_sizes, suite._dtypes())
        case = next((c for c in covering if is_caught(c)), None) or find(suite.cases(VARIANT[bug.variant]),
                                                                        is_caught, settings=SEARCH)
    except NoSuchExample:
        zoo_score["missed"].append(bug.name)
        pytest.fail(f"{bug.name} ({bug.summary}) was not caught by {bug.caught_by} as a {bug.symptom} "
                    f"in {MAX_EXAMPLES} examples")
    zoo_score["caught"].append(bug.name)
    report = caught[case]
    print(f"{bug.name}: caught by {bug.caught_by} after {suite.examples} examples, "
          f"{time.perf_counter() - started:.1f} s\n{report}")
    if bug.cause:
        causes = [line for line in report.splitlines() if "likely cause:" in line]
        assert any(bug.cause in line for line in causes), f"expected a likely cause naming {bug.cause!r}:\n{report}"

    reference = Suite("reference", pool)
    ev = reference.evidence(case)
    for name in verdict.SPEC:
        found = verdict.evaluate(ev, name)
        assert found == [], format_failure(ev, name, found, "reference")


# known-correct impls: the reference, and a correct file in the simple-module convention (the real
# libraries in impls/peers are what the suite checks, not known to be correct)
CORRECT = ["reference", os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "simple_module_good.py")]


@pytest.mark.parametrize("impl", CORRECT, ids=os.path.basename)
def test_correct_impl_passes_every_property(impl, pool):
    """Every known-correct impl passes every property, on every variant it declares."""
    suite = Suite(impl, pool, world_sizes=range(1, 5))
    try:
        variants = [v for v in VARIANTS if suite.unsupported(v) is None]
    except ImplUnusable as exc:
        pytest.skip(f"{impl} cannot be loaded here: {exc}")

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of([suite.cases(v) for v in variants]))
    def every_property_holds(case):
        ev = suite.evidence(case)
        for name in verdict.SPEC:
            found = verdict.evaluate(ev, name)
            assert found == [], format_failure(ev, name, found, impl)

    every_property_holds()


def test_every_property_is_caught_by_some_seeded_bug():
    """The other half of the mutation score: no property of the spec goes unshown to fail. A property
    measured outside the candidate (``MEASURED_OUTSIDE``: the sandbox's loopback) is not available
    here; the grading fixtures that fail it are in ``test_parallelism_grading.py``."""
    unshown = set(verdict.SPEC) - {bug.caught_by for bug in ONE_LAYER_BUGS} - set(verdict.MEASURED_OUTSIDE)
    assert not unshown, f"no seeded bug in impls/zoo is caught by {sorted(unshown)}"


def test_every_property_of_every_family_is_caught_by_some_seeded_bug():
    """The same for the other families: each property of each one has a seeded bug it must catch
    (sub-groups check the linear properties, whose bugs are above; they need one of their own)."""
    from tpconform.families.registry import families
    from tpconform.impls.zoo import EXTENSIONS

    caught = {(bug.variant.partition("/")[0], bug.caught_by) for bug in EXTENSIONS}
    for name, fam in families().items():
        if name == "linear":
            continue
        if name == "subgroups":
            assert any(f == "subgroups" for f, _ in caught), "no seeded bug of the subgroups family"
            continue
        unshown = [p for p in fam.properties if (name, p) not in caught]
        assert not unshown, f"family {name}: no seeded bug in impls/zoo is caught by {unshown}"
