"""Bug, in the simple-module convention (whose bias starts at zero): the layers initialise their bias
like ``nn.Linear`` (uniform in ±1/√in_features) from a generator seeded per rank (as a per-rank dropout
seed would be), so it is neither zero nor, for the row layer's replicated bias, the same on every rank.

Every other property reads the layer after the suite has written its own random bias into it: only
the layer as built shows this."""

import math
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tpconform.impls.simple_module import SimpleModuleImpl


def _bounds(n):
    rank, ws = dist.get_rank(), dist.get_world_size()
    if n % ws:
        raise ValueError(f"{n} features do not divide over {ws} ranks")
    per = n // ws
    return rank * per, (rank + 1) * per


def _bias(n, in_features, dtype):
    generator = torch.Generator().manual_seed(1234 + dist.get_rank())  # the bug: random, and per rank
    bound = 1 / math.sqrt(max(in_features, 1))
    return nn.Parameter(((torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * bound).to(dtype))


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.width = x.shape[-1]
        return torch.cat(parts, dim=-1)

    @staticmethod
    def backward(ctx, g):
        r = dist.get_rank()
        return g[..., r * ctx.width:(r + 1) * ctx.width].contiguous()


class _CopyToParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        dist.all_reduce(g)
        return g


class _ReduceFromParallel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, g):
        return g


class ColumnParallelLinear(nn.Module):
    def __init__(self, in_features, out_features, bias, master_weight):
        super().__init__()
        lo, hi = _bounds(out_features)
        self.weight = nn.Parameter(master_weight[lo:hi].clone())
        self.bias = _bias(hi - lo, in_features, master_weight.dtype) if bias else None

    def forward(self, x):
        return _Gather.apply(F.linear(_CopyToParallel.apply(x), self.weight, self.bias))


class RowParallelLinear(nn.Module):
    def __init__(self, in_features, out_features, bias, master_weight):
        super().__init__()
        lo, hi = _bounds(in_features)
        self.weight = nn.Parameter(master_weight[:, lo:hi].clone())
        self.bias = _bias(out_features, in_features, master_weight.dtype) if bias else None

    def forward(self, x):
        y = _ReduceFromParallel.apply(F.linear(x, self.weight))
        return y if self.bias is None else y + self.bias


class Impl(SimpleModuleImpl):
    def __init__(self):
        super().__init__(sys.modules[__name__], name="bug-bias-initialised-like-nn-linear")
