"""Spec §2–4 — the forward pass computes what ``nn.Linear`` computes, on every rank."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_output_matches_the_dense_layer(tp_suite, variant, data):
    """Every rank returns the dense output (its slice, when a column output stays sharded)."""
    tp_suite.check(draw_case(data, tp_suite, variant), "output_matches_the_dense_layer")


@for_every_variant
def test_ranks_agree_on_the_output(tp_suite, variant, data):
    """A replicated output is bit-identical on every rank."""
    tp_suite.check(draw_case(data, tp_suite, variant), "ranks_agree_on_the_output")


@for_every_variant
def test_output_shape_and_dtype_match_nn_linear(tp_suite, variant, data):
    """The output has nn.Linear's shape ``[*batch, out_features]`` (or the rank's slice) and dtype."""
    tp_suite.check(draw_case(data, tp_suite, variant), "output_shape_and_dtype_match_nn_linear")
