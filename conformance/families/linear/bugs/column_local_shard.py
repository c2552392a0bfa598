"""Bug: the column layer returns its local shard even when asked to gather the output.

Exposed by: any column case with gather_output=True and world_size >= 2 (the output has
out_features/world_size columns instead of out_features)."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, ReferenceImpl


class LocalShardColumn(ColumnParallelLinear):
    def forward(self, x):
        return F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)


class Impl(ReferenceImpl):
    name = "bug-column-local-shard"

    def column(self, weight, bias, *, gather_output, group):
        return LocalShardColumn(weight, bias, gather_output=gather_output, group=group)
