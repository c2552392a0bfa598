"""Bug: the "column" layer splits the weight along the input dim (it is a row layer inside).

Its gathered output is even numerically right, so only the shard shapes give it away.
Exposed by: any column case with world_size >= 2."""

from tpconform.impls.reference import ReferenceImpl, RowParallelLinear


class Impl(ReferenceImpl):
    name = "bug-wrong-split-dim"

    def column(self, weight, bias, *, gather_output, group):
        return RowParallelLinear(weight, bias, input_is_parallel=False, group=group)
