"""Bug: the row layer fixes the dtype of its all-reduce at construction (``self.reduce_dtype =
weight.dtype``, "reduce in the parameters' precision") and casts its partial outputs to it. After
``layer.double()`` (built in float32) or ``layer.to(torch.float32)`` (built in bfloat16) the reduction
still runs in the narrower dtype, and the output loses precision.

Exposed by: the module converted to a wider dtype after construction, at every world size (the cast
happens even on one rank); a layer used in the dtype it was built in is right."""

import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel


class FixedReduceDtypeRow(RowParallelLinear):
    def __init__(self, weight, bias=None, **kwargs):
        super().__init__(weight, bias, **kwargs)
        self.reduce_dtype = weight.dtype  # the bug: fixed here, never updated by .to() / .double()

    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        partial = F.linear(x, self.weight).to(self.reduce_dtype)
        y = ReduceFromParallel.apply(partial, self.comm).to(x.dtype)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-reduce-dtype-fixed-at-construction"

    def row(self, weight, bias, *, input_is_parallel, group):
        return FixedReduceDtypeRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
