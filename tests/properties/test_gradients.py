"""Spec §5–7 — backward, with a random upstream gradient, gives the dense gradients."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_input_grad_matches_the_dense_layer(tp_suite, variant, data):
    """The input grad is the dense one (its slice, for a row layer fed its input slice)."""
    tp_suite.check(draw_case(data, tp_suite, variant), "input_grad_matches_the_dense_layer")


@for_every_variant
def test_weight_grad_matches_the_dense_layer(tp_suite, variant, data):
    """Each weight shard's grad is the matching slice of the dense weight grad."""
    tp_suite.check(draw_case(data, tp_suite, variant), "weight_grad_matches_the_dense_layer")


@for_every_variant
def test_bias_grad_matches_the_dense_layer(tp_suite, variant, data):
    """Each bias (shard) grad is the matching slice of the dense bias grad."""
    tp_suite.check(draw_case(data, tp_suite, variant), "bias_grad_matches_the_dense_layer")
