"""Bug: the column layer flattens its input with ``x.reshape(x.numel() // in_features, -1)``, which
raises for an empty batch ("cannot reshape tensor of 0 elements ... -1 can be any value").

Exposed by: any column case with a batch dim of size 0 (every rank raises in forward)."""

from tpconform.impls.reference import ColumnParallelLinear, ReferenceImpl


class FlatteningColumn(ColumnParallelLinear):
    def forward(self, x):
        flat = x.reshape(x.numel() // x.shape[-1], -1)
        return super().forward(flat).reshape(*x.shape[:-1], -1)


class Impl(ReferenceImpl):
    name = "bug-empty-batch-crashes"

    def column(self, weight, bias, *, gather_output, group):
        return FlatteningColumn(weight, bias, gather_output=gather_output, group=group)
