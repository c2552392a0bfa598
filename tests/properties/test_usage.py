"""Spec §12 — the layer as training loops use it, each protocol on a fresh layer."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_micro_batches_accumulate_like_the_dense_layer(tp_suite, variant, data):
    """Two forwards before their backwards (reverse order), grads accumulating: each output and input
    grad is the dense one for its own input, the parameter grads are the dense sums."""
    tp_suite.check(draw_case(data, tp_suite, variant), "micro_batches_accumulate_like_the_dense_layer")


@for_every_variant
def test_a_frozen_input_still_trains_the_layer(tp_suite, variant, data):
    """An input that does not require grad: the weight and bias still get the dense grads."""
    tp_suite.check(draw_case(data, tp_suite, variant), "a_frozen_input_still_trains_the_layer")


@for_every_variant
def test_inference_calls_leave_training_unchanged(tp_suite, variant, data):
    """A call under torch.inference_mode(), then a training call: both are the dense layer's."""
    tp_suite.check(draw_case(data, tp_suite, variant), "inference_calls_leave_training_unchanged")
