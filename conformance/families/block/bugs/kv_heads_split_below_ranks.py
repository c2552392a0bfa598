"""Bug: the block plan does not check that there are at least as many kv heads as ranks: it shards wk/wv
anyway (torch.chunk rows: part of a head per rank) and sets one local kv head, so parallelising succeeds
and the forward fails mid-attention (huggingface/transformers #48307, torchtitan #2574).

Exposed by: kv heads fewer than ranks, query heads and FFN width divisible by the world size."""

import torch.distributed as dist
from torch.distributed.tensor.parallel import parallelize_module
from tpconform.families.block.plan import PlanCannotExpress, mesh_of, plan
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-block-kv-heads-split-below-ranks"

    def parallelize_block(self, block, group):
        p, attn = dist.get_world_size(group), block.attention
        if attn.n_heads % p or block.feed_forward.w1.out_features % p or (attn.n_kv_heads >= p and attn.n_kv_heads % p):
            raise PlanCannotExpress("heads or FFN width not divisible by the world size")
        if p == 1:
            return block
        parallelize_module(block, mesh_of(group), plan())
        attn.n_heads //= p
        attn.n_kv_heads = max(1, attn.n_kv_heads // p)  # fewer kv heads than ranks: split anyway
        return block
