"""Bug: the builder does not check that there are at least as many kv heads as ranks: it splits wk/wv's rows
anyway (part of a head per rank, or none) and gives each rank one local kv head, so building succeeds and
the forward fails mid-attention or attends over the wrong numbers (huggingface/transformers #48307,
torchtitan #2574: no check of ``n_kv_heads % tp``).

Exposed by: kv heads fewer than ranks, query heads and FFN width divisible by the world size."""

import torch.distributed as dist
from tpconform.families.block.plan import PlanCannotExpress
from tpconform.impls.reference import ReferenceImpl
from tpconform.impls.tp_block import TPBlock, name_map


class SplitAnyway(TPBlock):
    def local_kv_heads(self, n_kv_heads: int, p: int) -> int:
        return max(1, n_kv_heads // p)


class Impl(ReferenceImpl):
    name = "bug-block-builder-kv-heads-split-below-ranks"

    def build_tp_block(self, block, group):
        p, attn = dist.get_world_size(group), block.attention
        if attn.n_heads % p or block.feed_forward.w1.out_features % p or (attn.n_kv_heads >= p and attn.n_kv_heads % p):
            raise PlanCannotExpress("heads or FFN width not divisible by the world size")
        if getattr(block, "sequence_parallel", False) and block.seq_len % p:
            raise PlanCannotExpress("sequence not divisible by the world size")
        module = SplitAnyway(block, group)  # fewer kv heads than ranks: split anyway
        return module, name_map(block, module)
