"""Bug: the row layer never all-reduces its partial outputs: each rank returns ``x_r W_rᵀ + b``.

Exposed by: any row case with world_size >= 2 where another rank's partial product is non-zero
(a non-empty batch and a non-empty input slice on some other rank)."""

import torch.nn.functional as F
from tpconform.impls.reference import ReferenceImpl, RowParallelLinear, ScatterToParallel


class UnreducedRow(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        y = F.linear(x, self.weight)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-row-allreduce-missing"

    def row(self, weight, bias, *, input_is_parallel, group):
        return UnreducedRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
