"""Spec §8 — the layer leaves what it was given alone."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_inputs_are_left_untouched(tp_suite, variant, data):
    """Neither the input nor the upstream gradient is modified in place."""
    tp_suite.check(draw_case(data, tp_suite, variant), "inputs_are_left_untouched")
