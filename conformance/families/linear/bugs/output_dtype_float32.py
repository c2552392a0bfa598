"""Bug: the row layer computes in at least float32 and returns that: a bfloat16 or float16 input
gives a float32 output (the values are fine, more accurate even; the dtype is not nn.Linear's).

Exposed by: a row case with a bfloat16 or float16 input."""

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel


class Float32Row(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        wide = torch.promote_types(x.dtype, torch.float32)
        y = ReduceFromParallel.apply(F.linear(x.to(wide), self.weight.to(wide)), self.comm)
        return y if self.bias is None else y + self.bias.to(wide)


class Impl(ReferenceImpl):
    name = "bug-output-dtype-float32"

    def row(self, weight, bias, *, input_is_parallel, group):
        return Float32Row(weight, bias, input_is_parallel=input_is_parallel, group=group)
