"""Bug: the row layer all-reduces its (replicated) bias grad across ranks, as if the bias were
sharded: every rank's bias grad is world_size × the dense one.

Exposed by: a row case with bias=True, world_size >= 2 and a non-empty batch (so the bias grad is
not zero)."""

import torch.nn.functional as F
from tpconform.impls.reference import (
    CopyToParallel,
    ReduceFromParallel,
    ReferenceImpl,
    RowParallelLinear,
    ScatterToParallel,
)


class ReducedBiasGradRow(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        y = ReduceFromParallel.apply(F.linear(x, self.weight), self.comm)
        # CopyToParallel: identity forward, all-reduce of the grad backward — wrong for a replicated bias
        return y if self.bias is None else y + CopyToParallel.apply(self.bias, self.comm)


class Impl(ReferenceImpl):
    name = "bug-row-bias-grad-reduced"

    def row(self, weight, bias, *, input_is_parallel, group):
        return ReducedBiasGradRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
