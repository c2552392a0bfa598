"""Symptoms every family's likely causes test the same way (verdict side): a value that is the sum
over the ranks of what they returned (a reduction that did not happen), a value off by a constant
factor, a value equal to what one rank alone holds."""

from __future__ import annotations

from typing import Optional

import torch


def close(actual, expected: torch.Tensor, bound: Optional[torch.Tensor] = None) -> bool:
    """``actual`` has ``expected``'s shape and is within ``bound`` of it (a small relative slack when
    no bound is given: the question is which bug, not whether it is one)."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape or expected.numel() == 0:
        return False
    a, e = actual.double(), expected.double()
    slack = bound.double() if bound is not None else 1e-2 * (e.abs().max() + 1e-12)
    return bool(((a - e).abs() <= slack * 2 + 1e-12).all())


def ratio(actual, expected: torch.Tensor) -> Optional[float]:
    """The scalar ``k`` with ``actual ≈ k·expected``, if there is one."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return None
    a, e = actual.double().flatten(), expected.double().flatten()
    if e.numel() == 0 or float(e.abs().max()) == 0:
        return None
    k = float((a * e).sum() / (e * e).sum())
    return k if float((a - k * e).abs().max()) <= 1e-2 * float(e.abs().max()) * max(abs(k), 1) else None


def summed_over_ranks(ranks: list[dict], key: str, expected: torch.Tensor, rank: int) -> bool:
    """The ranks' ``key`` values add up to ``expected`` although rank ``rank``'s is not it: each rank
    returned its partial, and the reduction over the ranks is missing."""
    values = [res.get(key) for res in ranks]
    if len(values) < 2 or any(not isinstance(v, torch.Tensor) or v.shape != expected.shape for v in values):
        return False
    return close(sum(v.double() for v in values), expected) and not close(values[rank], expected)


def divided_by_world_size(got, expected: torch.Tensor, world_size: int) -> bool:
    k = ratio(got, expected)
    return world_size > 1 and k is not None and abs(k * world_size - 1) < 1e-2
