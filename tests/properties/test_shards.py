"""Spec §1 — each rank holds its shard of the dense weight and bias."""

from tpconform.pytest_plugin.testing import draw_case, for_every_variant


@for_every_variant
def test_shards_rebuild_the_dense_weight(tp_suite, variant, data):
    """Column shards are row blocks, row shards column blocks; in rank order they rebuild W
    exactly. A column bias is sharded with its rows; a row bias is held whole."""
    tp_suite.check(draw_case(data, tp_suite, variant), "shards_rebuild_the_dense_weight")
