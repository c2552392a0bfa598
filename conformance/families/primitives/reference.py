"""The reference's four collective primitives (``impl.primitives``, declared in ``tpconform.impls.protocol``),
composed into ``tpconform.impls.reference.ReferenceImpl``: Megatron-LM's mappings, one autograd function each."""

from __future__ import annotations

from tpconform.impls.layers import (
    Collectives,
    CopyToParallel,
    GatherFromParallel,
    ReduceFromParallel,
    ScatterToParallel,
)


class Reference:
    def primitives(self, group):
        comm = Collectives(group)
        return {
            "copy_to": lambda x: CopyToParallel.apply(x, comm),
            "reduce_from": lambda x: ReduceFromParallel.apply(x, comm),
            "scatter_to": lambda x: ScatterToParallel.apply(x, comm),
            "gather_from": lambda x: GatherFromParallel.apply(x, x.shape[-1] * comm.world_size, comm),
        }
