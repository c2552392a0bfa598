"""Bug: the column layer pushes its input on a stack kept on the module (``self.saved_inputs``) for its
hand-written weight grad, and each backward pops the last one pushed, instead of keeping the input in
the autograd context.

Exposed by: two forwards before their backwards run in the forwards' order (micro-batches whose losses
are back-propagated as they come, a layer shared by two branches): the first backward pops the second
call's input. One forward and its backward, and backwards in the reverse order, pop the right input."""

import math

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


def _rows(t):
    """``t`` as a matrix of rows (every batch dim folded; empty dims allowed)."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


class _LinearFromStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, module):
        ctx.module = module
        ctx.save_for_backward(weight)
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        x = ctx.module.saved_inputs.pop()  # the bug: the last input pushed, whichever call this backward is of
        grad_w = (_rows(grad).t() @ _rows(x).to(grad.dtype)).to(weight.dtype)
        return grad @ weight.to(grad.dtype), grad_w, None


class StackedInputColumn(ColumnParallelLinear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved_inputs: list = []

    def forward(self, x):
        x = CopyToParallel.apply(x, self.comm)
        if torch.is_grad_enabled():  # a call with no backward to come saves nothing
            self.saved_inputs.append(x.detach())
        y = _LinearFromStack.apply(x, self.weight, self)
        if self.bias is not None:
            y = y + self.bias
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-saved-inputs-on-a-stack"

    def column(self, weight, bias, *, gather_output, group):
        return StackedInputColumn(weight, bias, gather_output=gather_output, group=group)
