"""Bug: the row layer computes its weight grad by hand and **assigns** it (``weight.grad = ...``)
instead of accumulating it, as a hand-written backward that forgets gradient accumulation does.

Exposed by: two backward calls before ``zero_grad`` (gradient accumulation, micro-batches), at every
world size; one backward alone is right."""

import math

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel


def _rows(t):
    """``t`` as a matrix of rows (every batch dim folded; empty dims allowed)."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


class _LinearAssigningGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight_param):
        ctx.save_for_backward(x)
        ctx.weight = weight_param
        return F.linear(x, weight_param.detach())

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        w = ctx.weight
        w.grad = (_rows(grad).t() @ _rows(x)).to(w.dtype)  # the bug: overwrites an earlier grad
        return grad @ w.detach(), None


class AssigningRow(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        y = ReduceFromParallel.apply(_LinearAssigningGrad.apply(x, self.weight), self.comm)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-weight-grad-assigned"

    def row(self, weight, bias, *, input_is_parallel, group):
        return AssigningRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
