"""Bug: under sequence parallelism the block plan closes each sublayer with an all-reduce of the whole
sequence and then keeps its own shard (``RowwiseParallel()`` with a Replicate output, sliced to ``Shard(1)``
by ``PrepareModuleInputOutput``), where a reduce-scatter gives the shard directly: every value and grad is
right, but each forward sends an all-reduce (twice a reduce-scatter's bytes) instead of a reduce-scatter.

Exposed by: a sequence-parallel block at world size >= 2."""

import torch.distributed as dist
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import PrepareModuleInputOutput, RowwiseParallel
from tpconform.families.block.plan import parallelize_block, plan
from tpconform.impls.reference import ReferenceImpl


def _reduce_then_slice() -> dict:
    around = {name: PrepareModuleInputOutput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),),
                                             output_layouts=(Replicate(),), desired_output_layouts=(Shard(1),))
              for name in ("attention", "feed_forward")}
    return {**around, "attention.wo": RowwiseParallel(use_local_output=False),
            "feed_forward.w2": RowwiseParallel(use_local_output=False)}


class Impl(ReferenceImpl):
    name = "bug-block-sp-all-reduce-then-slice"

    def parallelize_block(self, block, group):
        if not block.sequence_parallel or dist.get_world_size(group) == 1:
            return parallelize_block(block, group)
        return parallelize_block(block, group, {**plan(True), **_reduce_then_slice()})
