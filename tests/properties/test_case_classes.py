"""Every case class and every pair of case classes, met by every property — the covering cases of
``families/linear/case_classes.py`` (an all-pairs set over the variant, world size, split, input rank,
empty batch, layout, dtype, scale and bias; one case per tile-tail class: rows and per-shard features
past 32, 64 and 128), whatever the random draws of the other tests reached. Each case runs once and
is judged on every property, and every property it violates is reported: one symptom does not hide
another."""

import pytest
from tpconform.engine.report import PropertyViolated, covering_report
from tpconform.families.linear.case_classes import covering_cases
from tpconform.families.linear.family import FAMILY as LINEAR
from tpconform.pytest_plugin.testing import judges
from tpconform.strategies import VARIANTS


@judges("linear", "*")
@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_every_property_holds_in_every_case_class(tp_suite, variant, request):
    """The covering cases of this run's world sizes and dtypes, each judged on every property (the
    report: the first failing case in full, each other one by its first symptom; ``-v``: all in full)."""
    props = [p for p in LINEAR.properties if not LINEAR.not_applicable(tp_suite, variant, p)]
    reports = []
    for case in covering_cases(variant, tp_suite.world_sizes, tp_suite._dtypes()):
        try:
            tp_suite.check_all(case, props)
        except AssertionError as exc:
            reports.append(str(exc))
    if reports:
        raise PropertyViolated(covering_report(reports, verbose=request.config.get_verbosity() > 0))
