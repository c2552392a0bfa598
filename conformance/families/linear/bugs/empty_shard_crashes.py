"""Bug: the column layer derives an init scale from its local shard size, ``1/sqrt(rows)``: a rank
whose shard is empty raises ZeroDivisionError at construction while the others build fine.

Exposed by: a column case with out_features < world_size (some rank holds no rows)."""

import math

from tpconform.impls.reference import ColumnParallelLinear, ReferenceImpl


class ScaledInitColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, **kw):
        super().__init__(weight, bias, **kw)
        self.init_std = 1.0 / math.sqrt(self.weight.shape[0])


class Impl(ReferenceImpl):
    name = "bug-empty-shard-crashes"

    def column(self, weight, bias, *, gather_output, group):
        return ScaledInitColumn(weight, bias, gather_output=gather_output, group=group)
