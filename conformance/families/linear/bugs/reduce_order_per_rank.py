"""Bug: the row layer's "all-reduce" all-gathers the partial outputs and sums them starting from
its own rank: every rank's sum is within rounding of the dense output, but the ranks round
differently, so the replicated output is not bit-identical across ranks.

Exposed by: a row case with world_size >= 3 (two ranks sum in orders that round differently) in a
dtype where the partial sums round (float32, bfloat16, float16)."""

import torch
import torch.distributed as dist
from tpconform.impls.reference import Collectives, ReferenceImpl, RowParallelLinear


class RankOrderSum(Collectives):
    def all_reduce(self, x):
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x, group=self.group)
        total = parts[self.rank].clone()
        for offset in range(1, self.world_size):
            total += parts[(self.rank + offset) % self.world_size]
        return total


class Impl(ReferenceImpl):
    name = "bug-reduce-order-per-rank"

    def row(self, weight, bias, *, input_is_parallel, group):
        return RowParallelLinear(weight, bias, input_is_parallel=input_is_parallel, comm=RankOrderSum(group))
