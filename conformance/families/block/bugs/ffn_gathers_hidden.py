"""Bug: the block plan gathers the FFN's hidden activations — w1/w3 ``ColwiseParallel(output_layouts=
Replicate())`` and w2 ``RowwiseParallel(input_layouts=Replicate())`` — so every value is right, but each
forward all-gathers twice what should stay sharded between the column and row projections.

Exposed by: any evenly shardable block at world size >= 2."""

from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
from tpconform.families.block.plan import parallelize_block, plan
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-block-ffn-gathers-hidden"

    def parallelize_block(self, block, group):
        gathered = {"feed_forward.w1": ColwiseParallel(output_layouts=Replicate()),
                    "feed_forward.w3": ColwiseParallel(output_layouts=Replicate()),
                    "feed_forward.w2": RowwiseParallel(input_layouts=Replicate())}
        return parallelize_block(block, group, {**plan(), **gathered})
