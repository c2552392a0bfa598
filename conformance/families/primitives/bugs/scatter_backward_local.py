"""Bug: the scatter-to primitive's backward puts this rank's grad slice back in place and zeros
elsewhere, instead of all-gathering every rank's slice.

Exposed by: ``scatter_to`` at world size >= 2 (``tests/properties/test_families.py``)."""

import torch.nn.functional as F
from tpconform.impls.reference import Collectives, ReferenceImpl, ScatterToParallel, _offset


class LocalBackwardScatter(ScatterToParallel):
    @staticmethod
    def backward(ctx, grad):
        sizes = ctx.comm.sizes(ctx.full_size)
        before = _offset(sizes, ctx.comm.rank)
        return F.pad(grad, (before, ctx.full_size - before - grad.shape[-1])), None


class Impl(ReferenceImpl):
    name = "bug-scatter-backward-local"

    def primitives(self, group):
        prims, comm = super().primitives(group), Collectives(group)
        prims["scatter_to"] = lambda x: LocalBackwardScatter.apply(x, comm)
        return prims
