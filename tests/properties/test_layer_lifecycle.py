"""Spec §13-16 — the layer as built, reloaded from a checkpoint, converted to another dtype, and trained in mixed precision."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_the_layer_as_built_follows_the_convention(tp_suite, variant, data):
    """Before the suite writes into it, the bias is the convention's (the given one's slice; zero in the
    simple-module convention), and a replicated bias is the same on every rank."""
    tp_suite.check(draw_case(data, tp_suite, variant), "the_layer_as_built_follows_the_convention")


@for_every_variant
def test_a_state_dict_reloads_the_trained_layer(tp_suite, variant, data):
    """The trained layer's state_dict(), loaded into a fresh layer: its shards, output and grads are the
    dense layer's after the update."""
    tp_suite.check(draw_case(data, tp_suite, variant), "a_state_dict_reloads_the_trained_layer")


@for_every_variant
def test_a_converted_layer_matches_the_dense_layer(tp_suite, variant, data):
    """Built in another dtype, then .double() / .half() / .to(dtype): the dense layer's results in the
    dtype it was converted to."""
    tp_suite.check(draw_case(data, tp_suite, variant), "a_converted_layer_matches_the_dense_layer")


@for_every_variant
def test_a_mixed_precision_step_matches_the_dense_layer(tp_suite, variant, data):
    """float32 parameters, called under torch.autocast on a 16-bit input, trained one SGD step and called
    again: the dense layer's results within the 16-bit compute dtype's bound (the cast of the updated
    parameters included)."""
    tp_suite.check(draw_case(data, tp_suite, variant), "a_mixed_precision_step_matches_the_dense_layer")
