"""The reference's building blocks: the whole TP algebra on one screen.

Four collective pairs, each a tiny autograd function (forward op / backward op), after
Megatron-LM's ``mappings.py``:

- copy-to-parallel:     identity    / all-reduce
- reduce-from-parallel: all-reduce  / identity
- scatter-to-parallel:  split       / all-gather   (last dim)
- gather-from-parallel: all-gather  / split        (last dim)

Split convention: ``torch.tensor_split`` — with ``n`` features over ``p`` ranks the first
``n % p`` ranks hold one extra feature (7 over 3 is ``[3, 2, 2]``; 2 over 3 is ``[1, 1, 0]``, so a
rank may hold an empty shard).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def partition_sizes(size: int, world_size: int) -> list[int]:
    """Shard sizes of ``size`` features over ``world_size`` ranks (``torch.tensor_split`` style)."""
    base, extra = divmod(size, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def _offset(sizes: list[int], rank: int) -> int:
    return sum(sizes[:rank])


class Collectives:
    """The three collectives the layers need, over one process group.

    Seeded bugs in ``impls/zoo`` subclass this to break one collective at a time."""

    def __init__(self, group=None):
        self.group = group

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    def sizes(self, size: int) -> list[int]:
        return partition_sizes(size, self.world_size)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous().clone()
        dist.all_reduce(x, group=self.group)
        return x

    def split_last(self, x: torch.Tensor) -> torch.Tensor:
        sizes = self.sizes(x.shape[-1])
        return x.narrow(-1, _offset(sizes, self.rank), sizes[self.rank]).contiguous()

    def gather_last(self, x: torch.Tensor, full_size: int) -> torch.Tensor:
        """All-gather along the last dim; Gloo needs equal sizes, so pad to the largest and trim."""
        sizes = self.sizes(full_size)
        padded = F.pad(x.contiguous(), (0, max(sizes) - x.shape[-1]))
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[..., :n] for p, n in zip(parts, sizes)], dim=-1)


class CopyToParallel(torch.autograd.Function):
    """Identity forward; all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x, comm):
        ctx.comm = comm
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.comm.all_reduce(grad), None


class ReduceFromParallel(torch.autograd.Function):
    """All-reduce forward; identity backward."""

    @staticmethod
    def forward(ctx, x, comm):
        return comm.all_reduce(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class ScatterToParallel(torch.autograd.Function):
    """Keep this rank's slice of the last dim forward; all-gather the gradient backward."""

    @staticmethod
    def forward(ctx, x, comm):
        ctx.comm, ctx.full_size = comm, x.shape[-1]
        return comm.split_last(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.comm.gather_last(grad, ctx.full_size), None


class GatherFromParallel(torch.autograd.Function):
    """All-gather along the last dim forward; keep this rank's slice of the gradient backward."""

    @staticmethod
    def forward(ctx, x, full_size, comm):
        ctx.comm = comm
        return comm.gather_last(x, full_size)

    @staticmethod
    def backward(ctx, grad):
        return ctx.comm.split_last(grad), None, None


class ColumnParallelLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` split along the output dim; the bias is sharded with it."""

    def __init__(self, weight, bias=None, *, gather_output: bool = True, group=None, comm=None):
        super().__init__()
        self.comm = comm or Collectives(group)
        self.gather_output = gather_output
        self.out_features = weight.shape[0]
        sizes, rank = self.comm.sizes(self.out_features), self.comm.rank
        rows = slice(_offset(sizes, rank), _offset(sizes, rank) + sizes[rank])
        self.weight = nn.Parameter(weight[rows].clone())
        self.bias = None if bias is None else nn.Parameter(bias[rows].clone())

    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)
        if self.gather_output:
            y = GatherFromParallel.apply(y, self.out_features, self.comm)
        return y


class RowParallelLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` split along the input dim; partial outputs are all-reduced and
    the (replicated) bias is added once, after the reduction."""

    def __init__(self, weight, bias=None, *, input_is_parallel: bool = False, group=None, comm=None):
        super().__init__()
        self.comm = comm or Collectives(group)
        self.input_is_parallel = input_is_parallel
        sizes, rank = self.comm.sizes(weight.shape[1]), self.comm.rank
        cols = slice(_offset(sizes, rank), _offset(sizes, rank) + sizes[rank])
        self.weight = nn.Parameter(weight[:, cols].clone())
        self.bias = None if bias is None else nn.Parameter(bias.clone())

    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        y = ReduceFromParallel.apply(F.linear(x, self.weight), self.comm)
        return y if self.bias is None else y + self.bias
