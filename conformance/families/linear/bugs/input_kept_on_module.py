"""Bug: the column layer keeps its input on the module (``self.saved_x``) for its hand-written
weight grad, instead of in the autograd context.

Exposed by: two forwards before their backwards (micro-batches, a layer shared by two branches,
activation checkpointing's re-forward): the first backward uses the second call's input."""

import math

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


def _rows(t):
    """``t`` as a matrix of rows (every batch dim folded; empty dims allowed)."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


class _LinearFromModule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, module):
        module.saved_x = x.detach()  # the bug: one slot per module, overwritten by the next forward
        ctx.module = module
        ctx.save_for_backward(weight)
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        x = ctx.module.saved_x
        grad_w = _rows(grad).t() @ _rows(x)
        return grad @ weight, grad_w, None


class ModuleInputColumn(ColumnParallelLinear):
    def forward(self, x):
        y = _LinearFromModule.apply(CopyToParallel.apply(x, self.comm), self.weight, self)
        if self.bias is not None:
            y = y + self.bias
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-input-kept-on-module"

    def column(self, weight, bias, *, gather_output, group):
        return ModuleInputColumn(weight, bias, gather_output=gather_output, group=group)
