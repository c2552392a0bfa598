"""Bug: the block plan shards the FFN's w1/w3 by hand (each rank keeps its rows as a plain parameter,
marked with ``tp_dense_slice``) and feeds them the replicated input directly, with no copy-to: the
forward is right, but each rank's grad of the FFN input is only its partial sum (never all-reduced).

Exposed by: any evenly shardable block at world size >= 2."""

import torch.distributed as dist
from torch import nn
from torch.distributed.tensor.parallel import parallelize_module
from tpconform.families.block.plan import check_expressible, localise_heads, mesh_of, plan
from tpconform.impls.reference import ReferenceImpl


def _keep_rows(linear: nn.Linear, rank: int, p: int) -> None:
    n = linear.out_features // p
    a, b = rank * n, (rank + 1) * n
    weight = nn.Parameter(linear.weight.detach()[a:b].clone())
    setattr(weight, "tp_dense_slice", ((a, b), (0, linear.in_features)))  # where it sits (parallelize_block)
    linear.weight = weight
    if linear.bias is not None:
        bias = nn.Parameter(linear.bias.detach()[a:b].clone())
        setattr(bias, "tp_dense_slice", ((a, b),))
        linear.bias = bias


class Impl(ReferenceImpl):
    name = "bug-block-ffn-input-grad-partial"

    def parallelize_block(self, block, group):
        p, rank = dist.get_world_size(group), dist.get_rank(group)
        check_expressible(block, p)
        if p == 1:
            return block
        styles = {k: v for k, v in plan().items() if k not in ("feed_forward.w1", "feed_forward.w3")}
        parallelize_module(block, mesh_of(group), styles)
        localise_heads(block, p)
        for linear in (block.feed_forward.w1, block.feed_forward.w3):
            _keep_rows(linear, rank, p)
        return block
