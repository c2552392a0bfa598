"""Bug: the reduce-from primitive all-reduces its input in place and tells autograd so
(``ctx.mark_dirty``), as fairscale's ``reduce_from_model_parallel_region`` does.

Autograd refuses that on a leaf that requires grad (``RuntimeError: a leaf Variable that requires
grad has been used in an in-place operation``), at any world size; any other input is overwritten
with the sum. The suite must report it as modifying its input in place, not as a wrong forward.
Exposed by: ``reduce_from`` on any input (``tests/properties/test_primitives.py``)."""

import torch.distributed as dist
from tpconform.impls.reference import Collectives, ReduceFromParallel, ReferenceImpl


class DirtyReduce(ReduceFromParallel):
    @staticmethod
    def forward(ctx, x, comm):
        ctx.mark_dirty(x)
        if dist.get_world_size(comm.group) > 1:
            dist.all_reduce(x, group=comm.group)  # the primitive cases are contiguous or one of two layouts
        return x


class Impl(ReferenceImpl):
    name = "bug-reduce-from-marks-dirty"

    def primitives(self, group):
        prims, comm = super().primitives(group), Collectives(group)
        prims["reduce_from"] = lambda x: DirtyReduce.apply(x, comm)
        return prims
