"""Bug: the column layer's all-gather concatenates the shards in reverse rank order.

Exposed by: a gathered column case with world_size >= 2 where two ranks hold different non-empty
shards: the output's column blocks come out permuted (every value is right, in the wrong place)."""

import torch
from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl


class ReversedGather(Collectives):
    def gather_last(self, x, full_size):
        blocks = super().gather_last(x, full_size).split(self.sizes(full_size), dim=-1)
        return torch.cat(blocks[::-1], dim=-1)


class Impl(ReferenceImpl):
    name = "bug-column-gather-wrong-order"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=ReversedGather(group))
