"""The dense transformer block the suite owns (Llama-style), and its exact weights and inputs.

``Block`` is built twice from the same numbers: in float64 by the verdict (the truth) and in the case's
dtype on each rank, where the impl's ``parallelize_block`` parallelises it. Its attention views its
projections with its own head counts (``attention.n_heads``, ``attention.n_kv_heads``): a plan that
shards the heads must set the local counts, as torchtitan's and Megatron's attention do.

    h   = x + wo(attention(rope(wq(n1)), rope(wk(n1)), wv(n1)))   n1 = attention_norm(x), causal, GQA
    out = h + w2(silu(w1(n2)) * w3(n2))                           n2 = ffn_norm(h)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6  # RMSNorm's epsilon
THETA = 10000.0  # RoPE's base


class RMSNorm(nn.Module):
    def __init__(self, dim: int, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def rope_angles(seq: int, head_dim: int) -> torch.Tensor:
    """RoPE's angles ``[seq, head_dim]`` (the half-split form: each frequency twice) for positions ``0 … seq-1``,
    in float64."""
    inv = THETA ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv)
    return torch.cat([angles, angles], -1)


def rope_tables(seq: int, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` ``[seq, head_dim]`` for positions ``0 … seq-1``, computed in float64, rounded to ``dtype``."""
    angles = rope_angles(seq, head_dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on ``x [batch, seq, heads, head_dim]`` (the half-split form of HF Llama)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Causal grouped-query attention of ``q [b, s, heads, d]`` over ``k``, ``v`` ``[b, s, kv_heads, d]``
    (query head ``i`` reads kv head ``i // (heads / kv_heads)``), RoPE by ``cos``, ``sin`` ``[s, d]`` first;
    ``[b, s, heads * d]``. (The dense block's core; a builder's attention over its local heads may reuse it.)"""
    b, s, n_heads, head_dim = q.shape
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    repeat = n_heads // k.shape[2]
    k, v = k.repeat_interleave(repeat, 2), v.repeat_interleave(repeat, 2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
    causal = torch.ones(s, s, dtype=torch.bool).triu(1)
    p = torch.softmax(scores.masked_fill(causal, float("-inf")), -1)
    return torch.einsum("bhqk,bkhd->bqhd", p, v).reshape(b, s, n_heads * head_dim)


class Attention(nn.Module):
    def __init__(self, hidden: int, n_heads: int, n_kv_heads: int, head_dim: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.wq = nn.Linear(hidden, n_heads * head_dim, bias=bias, dtype=dtype)
        self.wk = nn.Linear(hidden, n_kv_heads * head_dim, bias=bias, dtype=dtype)
        self.wv = nn.Linear(hidden, n_kv_heads * head_dim, bias=bias, dtype=dtype)
        self.wo = nn.Linear(n_heads * head_dim, hidden, bias=bias, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.wq(x).view(b, s, self.n_heads, self.head_dim)
        k = self.wk(x).view(b, s, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(b, s, self.n_kv_heads, self.head_dim)
        return self.wo(attend(q, k, v, *rope_tables(s, self.head_dim, x.dtype)))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, ffn: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn, bias=bias, dtype=dtype)
        self.w2 = nn.Linear(ffn, hidden, bias=bias, dtype=dtype)
        self.w3 = nn.Linear(hidden, ffn, bias=bias, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """One pre-norm Llama block on ``[batch, seq, hidden]`` (torchtitan's module names). It carries what a
    plan may read of the run: ``sequence_parallel`` (each rank is fed its sequence shard) and ``seq_len``
    (the whole sequence), from the case's fields of those names (``False``; ``case.seq``, when it has one)."""

    def __init__(self, case, dtype: torch.dtype):
        super().__init__()
        self.sequence_parallel = bool(getattr(case, "sequence_parallel", False))
        self.seq_len = getattr(case, "seq", None)
        self.attention_norm = RMSNorm(case.hidden, dtype)
        self.attention = Attention(case.hidden, case.n_heads, case.n_kv_heads, case.head_dim, case.bias, dtype)
        self.ffn_norm = RMSNorm(case.hidden, dtype)
        self.feed_forward = FeedForward(case.hidden, case.ffn, case.bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x))
        return h + self.feed_forward(self.ffn_norm(h))


def build_block(case, dtype: torch.dtype, weights: dict[str, torch.Tensor]) -> Block:
    """The dense block in ``dtype`` holding ``weights`` (by parameter name)."""
    block = Block(case, dtype)
    with torch.no_grad():
        for name, p in block.named_parameters():
            p.copy_(weights[name])
    return block


def take_step(parameters, optimizer: str, settings: dict) -> None:
    """One ``torch.optim`` step (``"sgd"`` or ``"adamw"`` with ``settings``) on ``parameters``' grads, then
    their grads cleared: what the suite does between the two passes, on the ranks and in float64 alike."""
    params = [p for p in parameters if p.grad is not None]
    opt = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[optimizer](params, **settings)
    opt.step()
    opt.zero_grad(set_to_none=True)


def block_weights(case, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every parameter, rounded to the case's dtype: projections ``N(0, 1/fan_in)``, norm weights and
    biases non-zero around ±1 / ±0.5 (a zero bias or a unit norm weight hides a bug that drops it)."""
    dt, out = case.torch_dtype, {}
    for name, p in Block(case, torch.float64).named_parameters():
        if name.endswith("norm.weight"):
            w = 0.5 + torch.rand(p.shape, generator=gen, dtype=torch.float64)
        elif name.endswith("bias"):
            sign = torch.randint(0, 2, p.shape, generator=gen).double() * 2 - 1
            w = (0.25 + 0.5 * torch.rand(p.shape, generator=gen, dtype=torch.float64)) * sign
        else:
            w = torch.randn(p.shape, generator=gen, dtype=torch.float64) * p.shape[1] ** -0.5
        out[name] = w.to(dt)
    return out
