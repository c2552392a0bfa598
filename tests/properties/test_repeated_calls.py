"""Spec §9 — a layer keeps no state from one call into the next."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_repeated_calls_are_independent(tp_suite, variant, data):
    """A second call, on the negated input, returns the dense output for that input."""
    tp_suite.check(draw_case(data, tp_suite, variant), "repeated_calls_are_independent")
