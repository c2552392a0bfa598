"""Bug: the column layer splits its weight ``torch.tensor_split``-style but its bias
``torch.chunk``-style, so a rank's bias rows are not its weight rows. It gathers the bias shards
separately and adds the whole bias after the output gather, so its output is even right.

The two splits agree whenever out_features divides evenly, and at world_size 2 always; they differ
for e.g. 4 over 3 ranks (``[2, 1, 1]`` vs ``[2, 2, 0]``) or 7 over 3. Exposed by: a column case with
bias=True, world_size >= 3 and such an out_features; only the shards show it."""

import torch
import torch.nn.functional as F
from torch import nn
from tpconform.impls.reference import (
    Collectives,
    ColumnParallelLinear,
    CopyToParallel,
    GatherFromParallel,
    ReferenceImpl,
    _offset,
)


class ChunkSizes(Collectives):
    def sizes(self, size):
        chunks = [len(c) for c in torch.arange(size).chunk(self.world_size)]
        return chunks + [0] * (self.world_size - len(chunks))


class ChunkedBiasColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, *, gather_output=True, group=None):
        super().__init__(weight, None, gather_output=gather_output, group=group)
        sizes, rank = self.comm.sizes(self.out_features), self.comm.rank
        self.rows = slice(_offset(sizes, rank), _offset(sizes, rank) + sizes[rank])
        self.bias_comm = ChunkSizes(group)
        if bias is not None:
            bsizes = self.bias_comm.sizes(self.out_features)
            start = _offset(bsizes, rank)
            self.bias = nn.Parameter(bias[start:start + bsizes[rank]].clone())

    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight)
        if self.gather_output:
            y = GatherFromParallel.apply(y, self.out_features, self.comm)
        if self.bias is None:
            return y
        full_bias = GatherFromParallel.apply(self.bias, self.out_features, self.bias_comm)
        return y + (full_bias if self.gather_output else full_bias[self.rows])


class Impl(ReferenceImpl):
    name = "bug-bias-split-differs"

    def column(self, weight, bias, *, gather_output, group):
        return ChunkedBiasColumn(weight, bias, gather_output=gather_output, group=group)
