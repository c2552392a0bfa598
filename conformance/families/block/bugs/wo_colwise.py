"""Bug: the block plan makes the attention's output projection column-parallel (ColwiseParallel) like
wq/wk/wv, instead of row-parallel: wo is handed the rank's heads where it expects the whole width.

Exposed by: any evenly shardable block at world size >= 2."""

from torch.distributed.tensor.parallel import ColwiseParallel
from tpconform.families.block.plan import parallelize_block, plan
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-block-wo-colwise"

    def parallelize_block(self, block, group):
        return parallelize_block(block, group, {**plan(), "attention.wo": ColwiseParallel()})
