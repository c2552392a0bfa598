"""Bug: a row layer fed the full input "saves an allocation" by writing its input slice into the
front of the caller's input tensor: the output is right, the caller's input is clobbered.

Exposed by: a row case with input_is_parallel=False, world_size >= 2 and a non-empty batch, where a
rank other than 0 holds a slice whose values differ from the input's first columns."""

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel


class InPlaceScatterRow(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            local = ScatterToParallel.apply(x, self.comm)
            with torch.no_grad():
                x[..., :local.shape[-1]] = local
            x = local
        y = ReduceFromParallel.apply(F.linear(x, self.weight), self.comm)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-input-modified-in-place"

    def row(self, weight, bias, *, input_is_parallel, group):
        return InPlaceScatterRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
