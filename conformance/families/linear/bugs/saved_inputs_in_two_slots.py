"""Bug: the column layer keeps its input in one of two slots on the module (a double buffer, as a layer
that overlaps the next micro-batch's communication with this one's compute does), chosen by the call's
parity, and its hand-written weight grad reads the slot its call wrote, instead of keeping the input in
the autograd context.

Exposed by: three or more forwards before their backwards (gradient accumulation over micro-batches that
all run forward first, pipeline schedules): the third forward overwrites the first's slot, so the first
call's weight grad uses the third call's input. One forward and its backward, and two forwards before
their backwards in either order, read the right input."""

import math

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


def _rows(t):
    """``t`` as a matrix of rows (every batch dim folded; empty dims allowed)."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


class _LinearFromSlot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, module, slot):
        ctx.module, ctx.slot = module, slot
        ctx.save_for_backward(weight)
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        x = ctx.module.slots[ctx.slot]  # the bug: whatever the slot holds now, not what this call put there
        grad_w = (_rows(grad).t() @ _rows(x).to(grad.dtype)).to(weight.dtype)
        return grad @ weight.to(grad.dtype), grad_w, None, None


class TwoSlotColumn(ColumnParallelLinear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots: list = [None, None]
        self.calls = 0

    def forward(self, x):
        x = CopyToParallel.apply(x, self.comm)
        slot = self.calls % 2
        if torch.is_grad_enabled():  # a call with no backward to come saves nothing
            self.slots[slot] = x.detach()
            self.calls += 1
        y = _LinearFromSlot.apply(x, self.weight, self, slot)
        if self.bias is not None:
            y = y + self.bias
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-saved-inputs-in-two-slots"

    def column(self, weight, bias, *, gather_output, group):
        return TwoSlotColumn(weight, bias, gather_output=gather_output, group=group)
