"""Bug: the column layer splits chunk-style (4 over 3 ranks: [2, 2, 0]), the row layer
tensor_split-style ([2, 1, 1]).

Each layer alone conforms (the suite accepts either convention), but in the MLP the column's output
slice on a rank is not the slice the row layer's weight expects.
Exposed by: the MLP with a hidden width that the world size does not divide, world size >= 3."""

import math

from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl


class ChunkCollectives(Collectives):
    def sizes(self, size: int) -> list[int]:
        step = math.ceil(size / self.world_size) if size else 0
        return [max(0, min(step, size - r * step)) for r in range(self.world_size)]


class Impl(ReferenceImpl):
    name = "bug-mlp-partitions-differ"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=ChunkCollectives(group))
