"""Spec §11 — a training step on the shards is what the dense layer's training step is."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_training_step_matches_the_dense_layer(tp_suite, variant, data):
    """SGD on every rank's shards (their own grads) and a delta added in place; then the output and
    grads on a new input are the dense layer's, with the same update applied to the full weight."""
    tp_suite.check(draw_case(data, tp_suite, variant), "training_step_matches_the_dense_layer")
