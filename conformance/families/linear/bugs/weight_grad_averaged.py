"""Bug: the row layer averages its weight grad over the ranks (data-parallel habit): a hook divides
it by world_size, so every shard's grad is world_size × too small.

Exposed by: a row case with world_size >= 2 and a non-empty batch."""

from tpconform.impls.reference import ReferenceImpl, RowParallelLinear


class Impl(ReferenceImpl):
    name = "bug-weight-grad-averaged"

    def row(self, weight, bias, *, input_is_parallel, group):
        layer = RowParallelLinear(weight, bias, input_is_parallel=input_is_parallel, group=group)
        world_size = layer.comm.world_size
        layer.weight.register_hook(lambda grad: grad / world_size)
        return layer
