"""Bug: a row layer fed the full input scatters it, but its backward does not all-gather the input
grad: each rank's input grad holds only its own slice (zeros elsewhere).

Exposed by: a row case with input_is_parallel=False, world_size >= 2 and a non-empty batch."""

import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel, _offset


class ScatterWithoutGather(ScatterToParallel):
    @staticmethod
    def backward(ctx, grad):
        sizes = ctx.comm.sizes(ctx.full_size)
        start = _offset(sizes, ctx.comm.rank)
        return F.pad(grad, (start, ctx.full_size - start - grad.shape[-1])), None


class NoGatherRow(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterWithoutGather.apply(x, self.comm)
        y = ReduceFromParallel.apply(F.linear(x, self.weight), self.comm)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-row-input-grad-not-gathered"

    def row(self, weight, bias, *, input_is_parallel, group):
        return NoGatherRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
