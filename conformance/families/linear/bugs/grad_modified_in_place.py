"""Bug: the column layer's gather backward zeroes the incoming (upstream) gradient once it has taken
its slice, "to free memory early": the caller's gradient tensor is modified in place.

Exposed by: a gathered column case with a non-empty batch (the upstream grad is random, not zero)."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


class ZeroingGather(GatherFromParallel):
    @staticmethod
    def backward(ctx, grad):
        local = ctx.comm.split_last(grad)
        grad.zero_()
        return local, None, None


class ZeroingGatherColumn(ColumnParallelLinear):
    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)
        return ZeroingGather.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-grad-modified-in-place"

    def column(self, weight, bias, *, gather_output, group):
        return ZeroingGatherColumn(weight, bias, gather_output=gather_output, group=group)
