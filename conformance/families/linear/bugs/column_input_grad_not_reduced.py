"""Bug: the column layer's input copy has no backward all-reduce: each rank's input grad is only
its own shard's contribution ``g_r W_r``.

Exposed by: a column case with world_size >= 2, a non-empty batch and rows on more than one rank."""

from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl


class NoReduce(Collectives):
    def all_reduce(self, x):  # the column layer all-reduces only in its input copy's backward
        return x.clone()


class Impl(ReferenceImpl):
    name = "bug-column-input-grad-not-reduced"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=NoReduce(group))
