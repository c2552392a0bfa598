"""Bug: the column layer flattens its input's batch dims with ``x.view(-1, in_features)`` (and views
the output back). ``view`` needs a layout whose batch dims merge without a copy: right for a
contiguous input and for one merely strided in its last dim, a RuntimeError for an input whose batch
dims are permuted, expanded or transposed against each other (``reshape`` would have copied).

Exposed by: a column case with at least two batch dims in the ``batch_permuted``, ``transposed`` or
``expanded`` layout (every rank raises in forward)."""

from tpconform.impls.reference import ColumnParallelLinear, ReferenceImpl


class ViewingColumn(ColumnParallelLinear):
    def forward(self, x):
        batch = x.shape[:-1]
        y = super().forward(x.view(-1, x.shape[-1]))
        return y.view(*batch, y.shape[-1])


class Impl(ReferenceImpl):
    name = "bug-view-on-input"

    def column(self, weight, bias, *, gather_output, group):
        return ViewingColumn(weight, bias, gather_output=gather_output, group=group)
