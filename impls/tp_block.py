"""The reference's builder for the block family (``impl.build_tp_block``, declared in
``conformance/families/block/case.py``): a Megatron-style tensor-parallel Llama block made of the suite's own
parallel layers, built from the dense block's weights, with the name map that says which of its parameters
holds which dense one.

Each sublayer enters the tensor-parallel region once (Megatron's fused QKV / gate-up input):

- without sequence parallelism: :class:`~tpconform.impls.layers.CopyToParallel` (identity forward, the input
  grad all-reduced backward), the column projections (``wq``, ``wk``, ``wv``; ``w1``, ``w3``) on their row
  slices, the row projections (``wo``, ``w2``) a :class:`~tpconform.impls.layers.RowParallelLinear` on the
  sharded activations (one all-reduce each, the bias once after it);
- with sequence parallelism (``block.sequence_parallel``: the rank holds its sequence shard; activations
  are ``[seq, batch, hidden]`` inside, Megatron's layout): the sublayer's input all-gathered along the sequence
  (:class:`~tpconform.impls.sequence_parallel.GatherFromSequenceParallel`: reduce-scatter backward), the row
  projections :class:`~tpconform.impls.sequence_parallel.SequenceParallelRow` (a reduce-scatter; the bias's
  grad all-reduced), and the norms' weights all-reduced backward (each rank's norm sees its tokens only).

Heads are split by hand: each rank attends over ``n_heads / p`` query heads and ``n_kv_heads / p`` kv heads
(:func:`tpconform.families.block.dense.attend`, RoPE over the whole sequence's positions). A config this
cannot express (heads, kv heads — fewer than ranks included —, the FFN width or the SP sequence not divisible
by the world size) is refused while building, as the reference plan refuses it
(:func:`tpconform.families.block.plan.check_expressible`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tpconform.families.block.dense import EPS, attend, rope_tables
from tpconform.families.block.plan import check_expressible
from tpconform.impls.layers import Collectives, ColumnParallelLinear, CopyToParallel, RowParallelLinear, _offset
from tpconform.impls.sequence_parallel import GatherFromSequenceParallel, SequenceParallelRow

COLUMNS = ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1", "feed_forward.w3")
ROWS = ("attention.wo", "feed_forward.w2")
NORMS = ("attention_norm", "ffn_norm")


class LocalColumn(ColumnParallelLinear):
    """A column layer whose input has already entered the parallel region (the sublayer's one copy-to or
    sequence gather): its forward is the local product alone."""

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class TPRMSNorm(nn.Module):
    """The replicated RMSNorm; under sequence parallelism its weight's grad is all-reduced (copy-to on the
    weight), since each rank's norm sees only its own tokens."""

    def __init__(self, weight: torch.Tensor, comm: Collectives, sequence_parallel: bool):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.comm, self.sequence_parallel = comm, sequence_parallel

    def forward(self, x):
        w = CopyToParallel.apply(self.weight, self.comm) if self.sequence_parallel else self.weight
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


class TPBlock(nn.Module):
    """One rank's part of the block: ``[batch, seq (or its shard under SP), hidden]`` in and out."""

    def __init__(self, dense, group):
        super().__init__()
        comm = self.comm = Collectives(group)
        self.sequence_parallel = bool(getattr(dense, "sequence_parallel", False))
        attn, p = dense.attention, comm.world_size
        self.head_dim = attn.head_dim
        self.n_heads, self.n_kv_heads = attn.n_heads // p, self.local_kv_heads(attn.n_kv_heads, p)
        modules = dict(dense.named_modules())
        self.attention_norm = TPRMSNorm(dense.attention_norm.weight, comm, self.sequence_parallel)
        self.ffn_norm = TPRMSNorm(dense.ffn_norm.weight, comm, self.sequence_parallel)
        self.columns = nn.ModuleDict({name.replace(".", "_"): self.column(modules[name]) for name in COLUMNS})
        self.rows = nn.ModuleDict({name.replace(".", "_"): self.row(modules[name]) for name in ROWS})

    def local_kv_heads(self, n_kv_heads: int, p: int) -> int:
        return n_kv_heads // p

    def column(self, linear: nn.Linear) -> nn.Module:
        return LocalColumn(linear.weight.detach(), _detached(linear.bias), gather_output=False, comm=self.comm)

    def row(self, linear: nn.Linear) -> nn.Module:
        w, b = linear.weight.detach(), _detached(linear.bias)
        if self.sequence_parallel:
            return SequenceParallelRow(w, b, comm=self.comm)
        return RowParallelLinear(w, b, input_is_parallel=True, comm=self.comm)

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """The sublayer's input in the parallel region: gathered along the sequence (SP), or copied-to."""
        if self.sequence_parallel:
            return GatherFromSequenceParallel.apply(x, self.comm)
        return CopyToParallel.apply(x, self.comm)

    def rope(self, seq: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos``, ``sin`` for the whole sequence's positions (the attention sees all of it)."""
        return rope_tables(seq, self.head_dim, dtype)

    def batch_first(self, t: torch.Tensor) -> torch.Tensor:
        """``[batch, seq, …]`` from the layout inside (``[seq, batch, …]`` under SP), and back (its own inverse)."""
        return t.transpose(0, 1) if self.sequence_parallel else t

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        c = self.columns
        q, k, v = (self.batch_first(c[f"attention_{w}"](x)) for w in ("wq", "wk", "wv"))
        b, s = q.shape[:2]
        q = q.reshape(b, s, self.n_heads, self.head_dim)
        k = k.reshape(b, s, self.n_kv_heads, self.head_dim)
        v = v.reshape(b, s, self.n_kv_heads, self.head_dim)
        o = attend(q, k, v, *self.rope(s, x.dtype))
        return self.rows["attention_wo"](self.batch_first(o))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.columns
        return self.rows["feed_forward_w2"](F.silu(c["feed_forward_w1"](x)) * c["feed_forward_w3"](x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batch_first(x)
        h = x + self.attention(self.enter(self.attention_norm(x)))
        return self.batch_first(h + self.feed_forward(self.enter(self.ffn_norm(h))))


def _detached(t):
    return None if t is None else t.detach()


def name_map(dense, block: TPBlock) -> dict[str, tuple[str, Any]]:
    """Dense parameter name -> (the TP block's parameter name, how it is sharded): the column projections'
    weights and biases by rows (``(0, start, stop)``, the layers' own split), the row projections' weights by
    columns, their biases and the norms replicated (``None``)."""
    shapes, r = {n: p.shape for n, p in dense.named_parameters()}, block.comm.rank

    def part(dense_name: str, dim: int) -> tuple[int, int, int]:
        sizes = block.comm.sizes(shapes[f"{dense_name}.weight"][dim])
        return dim, _offset(sizes, r), _offset(sizes, r) + sizes[r]

    out: dict[str, tuple[str, Any]] = {f"{n}.weight": (f"{n}.weight", None) for n in NORMS}
    for name in COLUMNS:
        theirs = f"columns.{name.replace('.', '_')}"
        out[f"{name}.weight"] = (f"{theirs}.weight", part(name, 0))
        out[f"{name}.bias"] = (f"{theirs}.bias", part(name, 0))
    for name in ROWS:
        theirs = f"rows.{name.replace('.', '_')}"
        out[f"{name}.weight"] = (f"{theirs}.weight", part(name, 1))
        out[f"{name}.bias"] = (f"{theirs}.bias", None)
    return {k: v for k, v in out.items() if k in shapes}


def build_tp_block(dense, group, block_type: type = TPBlock):
    """The TP block for this rank and its name map; refuses what it cannot express (on every rank alike).
    (``block_type``: for the seeded bugs that change one step of it.)"""
    check_expressible(dense, dist.get_world_size(group))
    block = block_type(dense, group)
    return block, name_map(dense, block)
