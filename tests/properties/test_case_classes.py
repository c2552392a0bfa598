"""Every case class, met by every property — the nine covering cases of ``strategies/case_classes.py``
(divisible, non-divisible and fewer features than ranks; empty, 1-D, 2-D and >=3-D inputs; every
memory layout and dtype; large features; with and without bias), whatever the random draws of the
other tests reached. Each case is judged on every property, and every property it violates is
reported: one symptom does not hide another."""

import pytest

from conformance.engine.suite import format_failure
from conformance.families.linear.family import FAMILY as LINEAR
from conformance.pytest_plugin.testing import judges
from strategies import VARIANTS
from strategies.case_classes import covering_cases


@judges("linear", "*")
@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_every_property_holds_in_every_case_class(tp_suite, variant):
    """The covering cases of this run's world sizes and dtypes, each judged on every property."""
    reports = []
    for case in covering_cases(variant, tp_suite.world_sizes, tp_suite._dtypes()):
        for prop in LINEAR.properties:
            if LINEAR.not_applicable(tp_suite, variant, prop):
                continue
            found = tp_suite.violations(case, prop)
            if found:
                ev, found = tp_suite.checked(case, prop)
                reports.append(format_failure(ev, prop, found, tp_suite.impl_spec) if found else "")
    reports = [r for r in reports if r]
    assert not reports, f"{len(reports)} violation report(s) on the covering cases:\n\n" + "\n\n".join(reports)
