"""Spec §10 — tensor parallelism communicates activations, never the weight."""

from conformance.testing import draw_case, for_every_variant


@for_every_variant
def test_communicates_activations_not_weights(tp_suite, variant, data):
    """Per rank, the elements sent into collectives are at most those of the input, output and grads."""
    tp_suite.check(draw_case(data, tp_suite, variant), "communicates_activations_not_weights")
