"""Bug: the block plan shards wq/wk/wv by heads (ColwiseParallel) but leaves the attention's head counts
global: each rank views its projection's slice with the whole model's n_heads and fails mid-forward.

Exposed by: any evenly shardable block at world size >= 2."""

from tpconform.families.block.plan import parallelize_block
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-block-heads-not-divided"

    def parallelize_block(self, block, group):
        return parallelize_block(block, group, localise=False)  # the local head counts are never set
