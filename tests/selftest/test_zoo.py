"""Every seeded bug is caught by the property meant to catch it; the reference passes the same case."""

import time

import pytest
from hypothesis import HealthCheck, find, settings
from hypothesis.errors import NoSuchExample

from conformance.suite import Suite
from impls.zoo import ZOO
from strategies import VARIANTS

VARIANT = {str(v): v for v in VARIANTS}
SEARCH = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("bug", ZOO, ids=lambda b: b.name)
def test_seeded_bug_is_caught_by_its_property(bug, tp_pool, zoo_score):
    suite = Suite(bug.name, tp_pool, world_sizes=range(1, 5))
    started = time.perf_counter()
    try:
        case = find(suite.cases(VARIANT[bug.variant]),
                    lambda c: bool(suite.violations(c, bug.caught_by)), settings=SEARCH)
    except NoSuchExample:
        zoo_score["missed"].append(bug.name)
        pytest.fail(f"{bug.name} ({bug.summary}) was not caught by {bug.caught_by} in {SEARCH.max_examples} examples")
    zoo_score["caught"].append(bug.name)
    print(f"{bug.name}: minimal case {case.token()} ({time.perf_counter() - started:.1f} s incl. shrinking)")
    reference = Suite("reference", tp_pool)
    assert reference.violations(case, bug.caught_by) == [], "the reference must pass the bug's minimal case"


def test_reference_passes_every_property_on_the_zoos_cases(tp_pool):
    """The cases the zoo is caught on are not themselves impossible: the reference passes them all."""
    from conformance.properties import SPEC
    from hypothesis import given

    suite = Suite("reference", tp_pool, world_sizes=range(1, 5))

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=suite.cases(VARIANTS[0]) | suite.cases(VARIANTS[1]) | suite.cases(VARIANTS[2])
           | suite.cases(VARIANTS[3]))
    def every_property_holds(case):
        ev = suite.evidence(case)
        from conformance import properties

        for name in SPEC:
            assert properties.evaluate(ev, name) == [], (name, case)

    every_property_holds()
