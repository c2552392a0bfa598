"""Likely causes of a merged column layer's violations."""

from __future__ import annotations

from typing import Optional

import torch
from tpconform.spec.violations import Violation


def _chunk(t: torch.Tensor, r: int, world_size: int) -> torch.Tensor:
    n = t.shape[0] // world_size
    return t[r * n:(r + 1) * n]


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, r, t = ev.case, v.rank, ev.tensors
    if r is None or r >= len(ev.ranks) or c.world_size < 2 or len(c.blocks) < 2:
        return None
    res = ev.ranks[r]
    w, b = res.get("weight_shard"), res.get("bias_shard")
    if isinstance(w, torch.Tensor) and w.shape == _chunk(t.weight, r, c.world_size).shape \
            and torch.equal(w, _chunk(t.weight, r, c.world_size)):
        return "the stacked weight is split as one block: each block (Q, K, V / gate, up) must be sharded on its own"
    if t.bias is not None and isinstance(b, torch.Tensor) and b.shape == _chunk(t.bias, r, c.world_size).shape \
            and torch.equal(b, _chunk(t.bias, r, c.world_size)):
        return "the bias is split as one block while the weight is split block by block: each rank adds wrong entries"
    if isinstance(w, torch.Tensor) and _strided(t.weight, c, r).shape == w.shape and max(c.blocks) >= 2 * c.world_size \
            and torch.equal(w, _strided(t.weight, c, r)):
        return ("each rank holds every world_size-th row of each block (a strided split of a packed layout), "
                "not a contiguous slice of it")
    return None


def _strided(t: torch.Tensor, c, r: int) -> torch.Tensor:
    """Rank ``r``'s rows ``r, r + p, r + 2p, …`` of every block: a packed layout read as ``[n, k, p]``."""
    return torch.cat([block[r::c.world_size] for block in t.split(list(c.blocks))])
