"""Bug: under sequence parallelism the block plan leaves the norms as plain modules on each rank's sequence
shard (no ``SequenceParallel`` style): the sublayers still gather their inputs from the shards, so the output
and the input grad are right, but each rank's norm weight grad is the sum over its own tokens only, never
all-reduced over the tensor-parallel group (NVIDIA/Megatron-LM #1446; gpt-neox #1259, TransformerEngine #435).

Exposed by: a sequence-parallel block at world size >= 2."""

import torch.distributed as dist
from tpconform.families.block.plan import parallelize_block, plan, sequence_parallel_norms
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-block-sp-norm-grads-not-reduced"

    def parallelize_block(self, block, group):
        if not block.sequence_parallel or dist.get_world_size(group) == 1:
            return parallelize_block(block, group)
        styles = {k: v for k, v in plan(True).items() if k not in sequence_parallel_norms()}
        return parallelize_block(block, group, styles)
