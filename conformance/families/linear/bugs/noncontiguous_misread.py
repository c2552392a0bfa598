"""Bug: the row layer assumes a contiguous input, as a hand-written kernel reading the raw buffer
would: it re-strides the input contiguously (``as_strided``), so a strided input is misread.

Exposed by: a row case with a non-contiguous input holding at least two elements."""

import torch
from tpconform.impls.reference import ReferenceImpl, RowParallelLinear


class AssumesContiguousRow(RowParallelLinear):
    def forward(self, x):
        strides = torch.empty(x.shape, device="meta").stride()
        return super().forward(x.as_strided(x.shape, strides))


class Impl(ReferenceImpl):
    name = "bug-noncontiguous-misread"

    def row(self, weight, bias, *, input_is_parallel, group):
        return AssumesContiguousRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
