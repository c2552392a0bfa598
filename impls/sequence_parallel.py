"""Reference sequence-parallel layers: the TP algebra with the sequence dim (dim 0) sharded too.

Two more collective pairs, after Megatron-LM's ``mappings.py`` (dim 0 is the sequence):

- gather-from-sequence-parallel:      all-gather (dim 0) / reduce-scatter (dim 0)
- reduce-scatter-to-sequence-parallel: reduce-scatter (dim 0) / all-gather (dim 0)

The column layer takes this rank's sequence shard ``[s/p, ..., in]`` and all-gathers it; its output
stays sharded on the last dim. The row layer takes its feature slice of the full sequence and
reduce-scatters its partial outputs, so each rank holds ``[s/p, ..., out]``; its (replicated)
bias is added to every shard, so its grad is a partial sum on each rank that must be all-reduced
(:class:`CopyToParallel`'s backward). The sequence length must divide by the world size. (Gloo's
reduce-scatter, ``dist.reduce_scatter_tensor``, exists since torch 2.x: one reduce-scatter, as counted
by the block family's collectives property, not an all-reduce and a slice.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tpconform.impls.layers import ColumnParallelLinear, CopyToParallel, RowParallelLinear


def gather_first(comm, x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x.contiguous()) for _ in range(comm.world_size)]
    dist.all_gather(parts, x.contiguous(), group=comm.group)
    return torch.cat(parts, dim=0)


def reduce_scatter_first(comm, x: torch.Tensor) -> torch.Tensor:
    out = torch.empty((x.shape[0] // comm.world_size, *x.shape[1:]), dtype=x.dtype)
    dist.reduce_scatter_tensor(out, x.contiguous(), group=comm.group)
    return out


class GatherFromSequenceParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, comm):
        ctx.comm = comm
        return gather_first(comm, x)

    @staticmethod
    def backward(ctx, grad):
        return reduce_scatter_first(ctx.comm, grad), None


class ReduceScatterToSequenceParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, comm):
        ctx.comm = comm
        return reduce_scatter_first(comm, x)

    @staticmethod
    def backward(ctx, grad):
        return gather_first(ctx.comm, grad), None


class SequenceParallelColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, *, group=None, comm=None):
        super().__init__(weight, bias, gather_output=False, group=group, comm=comm)

    def forward(self, x):
        return F.linear(GatherFromSequenceParallel.apply(x, self.comm), self.weight, self.bias)


class SequenceParallelRow(RowParallelLinear):
    def __init__(self, weight, bias=None, *, group=None, comm=None):
        super().__init__(weight, bias, input_is_parallel=True, group=group, comm=comm)

    def forward(self, x):
        y = ReduceScatterToSequenceParallel.apply(F.linear(x, self.weight), self.comm)
        return y if self.bias is None else y + CopyToParallel.apply(self.bias, self.comm)
