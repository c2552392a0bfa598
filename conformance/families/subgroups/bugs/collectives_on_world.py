"""Bug: the all-reduce ignores the TP group it was given and runs on the default (WORLD) group.

Invisible while the TP group is the whole world; with world 4 as two TP groups of 2 the row layer
sums both groups' partial outputs (and the column's backward both groups' input grads).
Exposed by: any case with more than one TP group (``tests/properties/test_families.py``)."""

import torch
import torch.distributed as dist
from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl, RowParallelLinear


class WorldAllReduce(Collectives):
    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous().clone()
        dist.all_reduce(x)  # no group=: the default group
        return x


class Impl(ReferenceImpl):
    name = "bug-collectives-on-world"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=WorldAllReduce(group))

    def row(self, weight, bias, *, input_is_parallel, group):
        return RowParallelLinear(weight, bias, input_is_parallel=input_is_parallel, comm=WorldAllReduce(group))
