"""Bug: not tensor-parallel at all. The column layer keeps the whole weight and bias on every rank
and computes the dense layer locally: numerically right, no communication, and each rank's
parameters have the full shape instead of a shard's.

Exposed by: a column case with world_size >= 2 (the shards, concatenated, are world_size × too tall)."""

import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tpconform.impls.reference import ReferenceImpl, _offset, partition_sizes


class ReplicatedColumn(nn.Module):
    def __init__(self, weight, bias, *, gather_output, group):
        super().__init__()
        self.gather_output = gather_output
        self.weight = nn.Parameter(weight.clone())
        self.bias = None if bias is None else nn.Parameter(bias.clone())
        sizes, rank = partition_sizes(weight.shape[0], dist.get_world_size(group)), dist.get_rank(group)
        self.rows = slice(_offset(sizes, rank), _offset(sizes, rank) + sizes[rank])

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        return y if self.gather_output else y[..., self.rows]


class Impl(ReferenceImpl):
    name = "bug-full-weight-replicated"

    def column(self, weight, bias, *, gather_output, group):
        return ReplicatedColumn(weight, bias, gather_output=gather_output, group=group)
