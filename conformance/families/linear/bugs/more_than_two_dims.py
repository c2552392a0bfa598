"""Bug: the row layer is written for ``[tokens, features]`` inputs: it flattens the batch dims, then
restores only the first one (``y.reshape(x.shape[0], -1)``), merging the rest into the features.

Exposed by: a row case with two or more batch dims (the output is ``[a, b·out_features]``)."""

from tpconform.impls.reference import ReferenceImpl, RowParallelLinear


class TwoDimRow(RowParallelLinear):
    def forward(self, x):
        y = super().forward(x.reshape(-1, x.shape[-1]))
        return y.reshape(x.shape[0], -1) if x.dim() > 1 else y.reshape(-1)


class Impl(ReferenceImpl):
    name = "bug-more-than-two-dims"

    def row(self, weight, bias, *, input_is_parallel, group):
        return TwoDimRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
