"""Bug: the reduce-from primitive all-reduces its input tensor in place and returns it.

Its output is right, but the caller's tensor now holds the sum over ranks (what an all-reduce on
``input_`` itself does when the input is already contiguous).
Exposed by: ``reduce_from`` at world size >= 2 on a contiguous input (``tests/properties/test_families.py``)."""

import torch.distributed as dist
from tpconform.impls.reference import Collectives, ReduceFromParallel, ReferenceImpl


class InPlaceReduce(ReduceFromParallel):
    @staticmethod
    def forward(ctx, x, comm):
        if x.is_contiguous():
            dist.all_reduce(x, group=comm.group)
            return x.view_as(x)
        return comm.all_reduce(x)


class Impl(ReferenceImpl):
    name = "bug-reduce-from-in-place"

    def primitives(self, group):
        prims, comm = super().primitives(group), Collectives(group)
        prims["reduce_from"] = lambda x: InPlaceReduce.apply(x, comm)
        return prims
