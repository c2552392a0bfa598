"""Bug: the block plan caches each norm's weight when parallelising (as a fused or pre-cast kernel would) and
the forward computes with the cache; the grads still reach the parameters (straight through), so the first
forward and backward are right, but after the optimizer steps the parameters the forward keeps using the
old values (the class of TransformerEngine's cached weights not refreshed after a step).

Exposed by: any block, at any world size, after one optimizer step."""

import torch
from tpconform.families.block.dense import EPS
from tpconform.families.block.plan import parallelize_block
from tpconform.impls.reference import ReferenceImpl


def _cached(norm):
    cache = norm.weight.detach().clone()

    def forward(x):
        w = norm.weight
        # the cached values, the parameter's grad: ``w - w.detach()`` is zero, its grad the identity
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * (cache + (w - w.detach()))

    return forward


class Impl(ReferenceImpl):
    name = "bug-block-stale-norm-weight"

    def parallelize_block(self, block, group):
        block = parallelize_block(block, group)
        for norm in (block.attention_norm, block.ffn_norm):
            norm.forward = _cached(norm)
        return block
