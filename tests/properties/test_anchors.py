"""Every family's anchors (``Family.anchors``): the fixed configs where its bugs live that a handful of random
draws can miss — for the transformer block and the tiny model, sequence parallelism, loss parallelism, tied and
untied embeddings, grouped-query heads, AdamW's step — each run once and judged on every property that
applies, every property it violates reported (one symptom does not hide another). A grade meets the same
cases before its random draws (``tpconform.grading.one``)."""

import pytest
from tpconform.engine.report import PropertyViolated, covering_report
from tpconform.families.registry import families
from tpconform.pytest_plugin.testing import judges
from tpconform.spec.family import Family

ANCHORED = [pytest.param(name, variant, marks=judges(name, "*"), id=f"{name}-{variant}")
            for name, fam in families().items() if type(fam).anchors is not Family.anchors
            for variant in fam.variants()]


@pytest.mark.parametrize(("family", "variant"), ANCHORED)
def test_every_property_holds_on_the_anchors(tp_suite, family, variant, request):
    """The family's anchors at this run's world sizes and dtypes, each judged on every property that applies
    (the report: the first failing case in full, each other one by its first symptom; ``-v``: all in full)."""
    fam = families()[family]
    props = [p for p in fam.properties if not fam.not_applicable(tp_suite, variant, p)]
    if not props:
        pytest.skip(f"no property of {family} applies to this run")
    reports = []
    for case in fam.anchors(tp_suite, variant):
        try:
            tp_suite.check_all(case, props)
        except PropertyViolated as exc:
            reports.append(str(exc))
    if reports:
        raise PropertyViolated(covering_report(reports, verbose=request.config.get_verbosity() > 0))
