"""Bug: the column layer's gather backward all-reduces the (already replicated) output grad before
taking its slice, so the weight and bias grads are world_size × too large.

Exposed by: a gathered column case with world_size >= 2 and a non-empty batch."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


class SummingGather(GatherFromParallel):
    @staticmethod
    def backward(ctx, grad):
        return ctx.comm.split_last(ctx.comm.all_reduce(grad)), None, None


class SummingGatherColumn(ColumnParallelLinear):
    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)
        return SummingGather.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-gather-backward-sums"

    def column(self, weight, bias, *, gather_output, group):
        return SummingGatherColumn(weight, bias, gather_output=gather_output, group=group)
