"""TP sub-groups — a world split into independent tensor-parallel groups (world 4 as two TP groups
of 2, world 6 as three of 2 and two of 3), each layer given its own group: each group, on its own,
is a conforming layer. A layer that silently uses the default (WORLD) group fails here only."""

import pytest

from conformance.families.subgroups import verdict as subgroups
from conformance.pytest_plugin.testing import for_every_variant

# the single-group spec, checked in every TP group of one run
PER_GROUP_SPEC = (
    "shards_rebuild_the_dense_weight",
    "output_matches_the_dense_layer",
    "ranks_agree_on_the_output",
    "input_grad_matches_the_dense_layer",
    "weight_grad_matches_the_dense_layer",
    "bias_grad_matches_the_dense_layer",
)


@for_every_variant
def test_each_tp_group_matches_the_dense_layer(tp_suite, variant, data):
    """In every TP group the shards rebuild that group's weight, and the outputs and grads are the
    dense layer's on that group's own example."""
    why_not = subgroups.not_applicable(tp_suite)
    if why_not:
        pytest.skip(why_not)
    strategy = subgroups.cases(tp_suite, variant)
    if strategy is None:
        pytest.skip(f"--world-sizes {list(tp_suite.world_sizes)} holds neither 4 nor 6")
    subgroups.check(tp_suite, data.draw(strategy, label="case"), PER_GROUP_SPEC)
