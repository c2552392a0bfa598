"""Bug: a column layer with gather_output=False all-gathers its output and then keeps its own slice.

The values are right (every single-layer property holds), but the MLP's forward runs an all-gather
besides the row layer's all-reduce: communication the sharded path exists to avoid.
Exposed by: the MLP's collective count (``tests/properties/test_families.py``)."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


class GatherThenSplitColumn(ColumnParallelLinear):
    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)
        full = GatherFromParallel.apply(y, self.out_features, self.comm)
        return full if self.gather_output else self.comm.split_last(full)


class Impl(ReferenceImpl):
    name = "bug-column-gathers-then-splits"

    def column(self, weight, bias, *, gather_output, group):
        return GatherThenSplitColumn(weight, bias, gather_output=gather_output, group=group)
