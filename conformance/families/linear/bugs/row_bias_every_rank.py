"""Bug: the row layer adds the bias on every rank before the all-reduce (world_size × bias).

Exposed by: any row case with bias=True and world_size >= 2; a zero bias would hide it."""

import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel


class BiasEveryRankRow(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        return ReduceFromParallel.apply(F.linear(x, self.weight, self.bias), self.comm)


class Impl(ReferenceImpl):
    name = "bug-row-bias-every-rank"

    def row(self, weight, bias, *, input_is_parallel, group):
        return BiasEveryRankRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
