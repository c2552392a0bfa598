"""Likely causes of a vocab-parallel cross entropy's violations."""

from __future__ import annotations

from typing import Optional

import torch
from tpconform.families.causes import close
from tpconform.spec.violations import Violation


def _loss_with_local_maxes(ev) -> torch.Tensor:
    """The loss when each rank shifts its logits by its own max (not the all-reduced one) and the
    shifted sums of exponentials and target logits are then all-reduced as if the shift were shared."""
    z, t, c = ev.tensors.logits.double(), ev.tensors.target, ev.case
    total = torch.zeros(z.shape[:-1], dtype=torch.float64)
    predicted = torch.zeros(z.shape[:-1], dtype=torch.float64)
    for q in range(c.world_size):
        cols = c.columns(q)
        shifted = z[..., cols] - z[..., cols].amax(-1, keepdim=True)
        total += shifted.exp().sum(-1)
        mine = (t >= cols.start) & (t < cols.stop)
        local = (t - cols.start).clamp(0, cols.stop - cols.start - 1)
        predicted += torch.where(mine, shifted.gather(-1, local.unsqueeze(-1)).squeeze(-1), 0.0)
    return total.log() - predicted


def likely_cause(ev, v: Violation) -> Optional[str]:
    if v.property == "cross_entropy_leaves_its_logits_untouched":
        return ("the logits are shifted by their max in place (logits -= max): the caller's logits, perhaps saved "
                "for backward by the layer that made them, change under it")
    r, c = v.rank, ev.case
    if r is None or r >= len(ev.ranks) or c.world_size < 2 or ev.tensors.logits.numel() == 0:
        return None
    if v.quantity == "loss" and close(ev.ranks[r].get("output"), _loss_with_local_maxes(ev)):
        return ("each rank shifts its logits by its own max: the max must be all-reduced (MAX) first, so that the "
                "exponentials summed over the ranks share one shift")
    if v.quantity == "logit grad":
        grad, t = ev.ranks[r].get("input_grad"), ev.tensors.target
        cols = c.columns(r)
        mine = (t >= cols.start) & (t < cols.stop)
        if grad is not None and bool((~mine).any()):
            return ("the one-hot of the target is subtracted on every rank (at a clamped column) instead of only on the "
                    "rank that holds the target's column")
    return None
