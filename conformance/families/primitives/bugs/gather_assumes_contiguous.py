"""Bug: the gather-from primitive reads its input's storage as if it were contiguous.

``x.as_strided(x.shape, contiguous strides)`` instead of ``x.contiguous()``: right for every
contiguous input, silently wrong element order for a strided or transposed one.
Exposed by: ``gather_from`` on a non-contiguous input (``tests/properties/test_families.py``)."""


from tpconform.impls.reference import Collectives, GatherFromParallel, ReferenceImpl


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for side in reversed(shape):
        strides.append(step)
        step *= max(side, 1)
    return tuple(reversed(strides))


class StorageGather(GatherFromParallel):
    @staticmethod
    def forward(ctx, x, full_size, comm):
        flat = x.as_strided(x.shape, _contiguous_strides(x.shape), x.storage_offset())
        return GatherFromParallel.forward(ctx, flat, full_size, comm)


class Impl(ReferenceImpl):
    name = "bug-gather-assumes-contiguous"

    def primitives(self, group):
        prims, comm = super().primitives(group), Collectives(group)
        prims["gather_from"] = lambda x: StorageGather.apply(x, x.shape[-1] * comm.world_size, comm)
        return prims
