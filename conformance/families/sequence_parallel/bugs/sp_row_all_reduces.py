"""Bug: the sequence-parallel row layer all-reduces instead of reduce-scattering: every rank returns
the whole sequence, not its shard (right values, wrong shape, world_size × the communication).

Exposed by: a sequence-parallel row case with world size >= 2 and a non-empty sequence."""

from tpconform.impls.reference import ReferenceImpl, RowParallelLinear


class AllReduceRow(RowParallelLinear):
    def __init__(self, weight, bias=None, *, group=None):
        super().__init__(weight, bias, input_is_parallel=True, group=group)


class Impl(ReferenceImpl):
    name = "bug-sp-row-all-reduces"

    def row_sequence_parallel(self, weight, bias, *, group):
        return AllReduceRow(weight, bias, group=group)
