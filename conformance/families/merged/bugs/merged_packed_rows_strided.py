"""Bug: a packed merged (QKV) column layer, which takes equal blocks only (it declares
``equal_blocks``), reads its packed blocks ``[n, rows, in]`` as ``[n, k, world_size, in]``: each rank
holds every ``world_size``-th row of a block instead of a contiguous slice of it.

Only a suite that can draw equal blocks alone finds it: with blocks of different sizes drawn, the
layer's refusal to build them is the failure every search shrinks to, hiding this one.
Exposed by: at least 2 rows a block per rank at world size >= 2
(``merged_column_shards_hold_each_blocks_slice``)."""

import torch
from tpconform.impls.limited import EqualBlocksImpl, PackedMergedColumn


class StridedRows(PackedMergedColumn):
    def packed_rows(self, packed: torch.Tensor) -> torch.Tensor:
        n, rows = packed.shape[:2]
        k = rows // self.comm.world_size
        return packed.view(n, k, self.comm.world_size, *packed.shape[2:])[:, :, self.comm.rank].reshape(
            n * k, *packed.shape[2:])


class Impl(EqualBlocksImpl):
    name = "bug-merged-packed-rows-strided"

    def merged_column(self, weights, biases, *, group):
        return StridedRows(weights, biases, group=group)
