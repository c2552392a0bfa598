"""Bug: non-divisible dims are silently truncated — every rank takes size // world_size features
and the remainder is dropped.

Exposed by: any case whose split dim is not divisible by the world size (world_size >= 2)."""

from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl, RowParallelLinear


class Truncating(Collectives):
    def sizes(self, size):
        return [size // self.world_size] * self.world_size


class Impl(ReferenceImpl):
    name = "bug-uneven-truncated"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=Truncating(group))

    def row(self, weight, bias, *, input_is_parallel, group):
        return RowParallelLinear(weight, bias, input_is_parallel=input_is_parallel, comm=Truncating(group))
