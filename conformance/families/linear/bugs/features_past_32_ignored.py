"""Bug: the column layer multiplies in a fixed tile of 32 input features and ignores the rest (a
kernel tuned on small models): right for every layer up to 32 features, wrong past them.

Exposed by: a column case with more than 32 input features — the "large features" case class,
which the random draws (up to 32 features) never reach and the covering cases always do."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl

TILE = 32


class TiledColumn(ColumnParallelLinear):
    def forward(self, x):
        x = CopyToParallel.apply(x, self.comm)
        y = F.linear(x[..., :TILE], self.weight[:, :TILE], self.bias)
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-features-past-32-ignored"

    def column(self, weight, bias, *, gather_output, group):
        return TiledColumn(weight, bias, gather_output=gather_output, group=group)
