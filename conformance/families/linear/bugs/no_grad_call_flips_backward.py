"""Bug: the column layer keeps "is this a decode call?" on the module (``self.decoding``, set by every
forward: ``not torch.is_grad_enabled()``), and its backward reads it there to skip the input grad's
all-reduce (a decode step needs no grad sync), instead of deciding at the forward.

Exposed by: a call under ``torch.no_grad()`` (a metric, a generation step) between a training call's
forward and its backward, at world size 2 and more: that backward sees the no_grad call's mode and
returns this rank's partial input grad. A no_grad or inference_mode call before the training forward
or after its backward leaves the flag as the training forward set it."""

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, GatherFromParallel, ReferenceImpl


class _CopyToUnlessDecoding(torch.autograd.Function):
    """Identity forward; backward all-reduces the grad unless the module now says it is decoding."""

    @staticmethod
    def forward(ctx, x, module):
        ctx.module = module
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        if ctx.module.decoding:  # the bug: the module's mode now, not the mode of the forward being differentiated
            return grad, None
        return ctx.module.comm.all_reduce(grad), None


class DecodeFlagColumn(ColumnParallelLinear):
    decoding = False

    def forward(self, x):
        self.decoding = not torch.is_grad_enabled()
        y = F.linear(_CopyToUnlessDecoding.apply(x, self), self.weight, self.bias)
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-no-grad-call-flips-backward"

    def column(self, weight, bias, *, gather_output, group):
        return DecodeFlagColumn(weight, bias, gather_output=gather_output, group=group)
