"""Bug: the column layer casts its weight to the input's dtype once, when the two differ, and reuses that
low-precision copy on every later call ("cast the master weight once per micro-batch", like a weight
cache that must be invalidated after each optimizer step and is not). The copy keeps its autograd link
(``self.weight.to(dtype)``: a cast saves no tensors, so backward through it again is allowed), so every
grad reaches the float32 weight and the optimizer steps it; the forward still computes with the weight
as it was at the first call.

Exposed by: mixed precision (float32 parameters, a 16-bit input under ``torch.autocast``), after the
optimizer step; a layer whose input has its parameters' dtype never takes the cached path."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


class CachedCastColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, **kwargs):
        super().__init__(weight, bias, **kwargs)
        self._cast = None

    def forward(self, x):
        weight, bias = self.weight, self.bias
        if x.dtype != weight.dtype:
            if self._cast is None or self._cast.dtype != x.dtype:
                self._cast = weight.to(x.dtype)  # the bug: cast once, never refreshed after an update
            weight = self._cast
            bias = None if bias is None else bias.to(x.dtype)
        y = F.linear(CopyToParallel.apply(x, self.comm), weight, bias)
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-cast-weight-cached-once"

    def column(self, weight, bias, *, gather_output, group):
        return CachedCastColumn(weight, bias, gather_output=gather_output, group=group)
