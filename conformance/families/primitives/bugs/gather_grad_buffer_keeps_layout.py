"""Bug: the gather-from primitive's backward receives its grad slice into a buffer that keeps the grad's layout.

``torch.empty_like(slice)`` keeps a transposed (column-major) slice's strides, and the slice is then written
into the buffer's storage in row-major order, as a collective that assumes contiguous buffers writes it (torch's
``dist.nn`` all_gather backward on Gloo: impls/peers/distnn.toml): right for every contiguous grad, the right
values in the wrong places for a transposed one.
Exposed by: ``gather_from``'s backward on a transposed upstream grad (``tests/properties/test_families.py``)."""


import torch
from tpconform.impls.layers import _offset
from tpconform.impls.reference import Collectives, GatherFromParallel, ReferenceImpl


class BufferGather(GatherFromParallel):
    @staticmethod
    def backward(ctx, grad):
        sizes = ctx.comm.sizes(grad.shape[-1])
        mine = grad.narrow(-1, _offset(sizes, ctx.comm.rank), sizes[ctx.comm.rank])  # a view: the grad's layout
        received = torch.empty_like(mine)  # preserve_format: a dense transposed slice keeps its strides
        received.as_strided(received.shape, mine.contiguous().stride()).copy_(mine.contiguous())
        return received, None, None


class Impl(ReferenceImpl):
    name = "bug-gather-grad-buffer-keeps-layout"

    def primitives(self, group):
        prims, comm = super().primitives(group), Collectives(group)
        prims["gather_from"] = lambda x: BufferGather.apply(x, x.shape[-1] * comm.world_size, comm)
        return prims
