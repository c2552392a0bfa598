"""Spec §10 — tensor parallelism communicates activations, never the weight, and never less than it must."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_communicates_activations_not_weights(tp_suite, variant, data):
    """Per rank, the elements sent into collectives are at most those of the input, output and grads."""
    tp_suite.check(draw_case(data, tp_suite, variant), "communicates_activations_not_weights")


@for_every_variant
def test_communicates_what_the_other_ranks_need(tp_suite, variant, data):
    """At world size >= 2, per rank, the elements sent are at least what the other ranks need of its
    part of the layer (a rank holding only its shard cannot produce the dense result alone)."""
    tp_suite.check(draw_case(data, tp_suite, variant), "communicates_what_the_other_ranks_need")
