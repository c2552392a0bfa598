"""Bug: the block plan all-reduces the norms' weight grads over the TP group, as sequence parallelism
needs, without sequence parallelism: every rank already holds the whole grad, which ends world_size x
too large (the inverse of Megatron-LM #1446).

Exposed by: any evenly shardable block at world size >= 2."""

import torch.distributed as dist
from tpconform.families.block.plan import parallelize_block
from tpconform.impls.reference import ReferenceImpl


def _summed(group):
    def hook(grad):
        grad = grad.clone()
        dist.all_reduce(grad, group=group)
        return grad
    return hook


class Impl(ReferenceImpl):
    name = "bug-block-norm-grads-reduced"

    def parallelize_block(self, block, group):
        block = parallelize_block(block, group)
        for norm in (block.attention_norm, block.ffn_norm):
            norm.weight.register_hook(_summed(group))
        return block
