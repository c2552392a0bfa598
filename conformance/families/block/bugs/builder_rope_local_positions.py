"""Bug: under sequence parallelism the builder's RoPE takes its positions from the rank's own sequence shard:
each shard's tokens restart at position 0 (the tables of the local length, repeated over the ranks), where
the gathered sequence's tokens sit at their global positions.

Exposed by: sequence parallelism on 2+ ranks (a shard of one token too: rank 1's token gets position 0)."""

import torch
from tpconform.impls.reference import ReferenceImpl
from tpconform.impls.tp_block import TPBlock, build_tp_block


class LocalPositions(TPBlock):
    def rope(self, seq: int, dtype: torch.dtype):
        if not self.sequence_parallel:
            return super().rope(seq, dtype)
        p = self.comm.world_size
        cos, sin = super().rope(seq // p, dtype)  # positions 0 … seq/p - 1 on every shard
        return cos.repeat(p, 1), sin.repeat(p, 1)


class Impl(ReferenceImpl):
    name = "bug-block-builder-rope-local-positions"

    def build_tp_block(self, block, group):
        return build_tp_block(block, group, LocalPositions)
