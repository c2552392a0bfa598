"""Bug: the row layer pre-transposes its weight shard once, at construction (``w.t().contiguous()``,
an "optimisation" for the matmul), and its forward multiplies by that copy. Grads still land on the
parameter, and until the parameter changes every result is right; after an optimizer step (or any
in-place update of the shard) the layer keeps computing with the weight it was built with.

Exposed by: the training step (``training_step_matches_the_dense_layer``), any row case."""

import torch
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel


class CachedTransposeLinear(torch.autograd.Function):
    """``x @ wt`` with ``wt`` a copy of ``weight.t()``; the weight grad goes to ``weight``."""

    @staticmethod
    def forward(ctx, x, weight, wt):
        ctx.save_for_backward(x, wt)
        return x.matmul(wt)

    @staticmethod
    def backward(ctx, grad):
        x, wt = ctx.saved_tensors
        g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        return grad.matmul(wt.t()), g2.t().matmul(x2), None


class CachedRow(RowParallelLinear):
    def __init__(self, weight, bias=None, **kw):
        super().__init__(weight, bias, **kw)
        self.weight_t = self.weight.detach().t().contiguous()

    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        y = ReduceFromParallel.apply(CachedTransposeLinear.apply(x, self.weight, self.weight_t), self.comm)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-weight-cached-at-construction"

    def row(self, weight, bias, *, input_is_parallel, group):
        return CachedRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
