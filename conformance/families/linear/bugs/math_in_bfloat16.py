"""Bug: the column layer does its matmul in bfloat16 whatever the input dtype (an autocast left on)
and casts the result back: the dtype looks right, the precision is bfloat16's.

Exposed by: a column case with a float32, float64 or float16 input whose values are not all exact in
bfloat16 (almost any non-empty batch)."""

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


class Bfloat16Column(ColumnParallelLinear):
    def forward(self, x):
        low = torch.bfloat16
        bias = None if self.bias is None else self.bias.to(low)
        y = F.linear(CopyToParallel.apply(x, self.comm).to(low), self.weight.to(low), bias).to(x.dtype)
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-math-in-bfloat16"

    def column(self, weight, bias, *, gather_output, group):
        return Bfloat16Column(weight, bias, gather_output=gather_output, group=group)
