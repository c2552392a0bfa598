"""Likely causes of a vocab-parallel embedding's violations."""

from __future__ import annotations

from typing import Optional

import torch
from tpconform.families.causes import close
from tpconform.spec.violations import Violation


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, r, t = ev.case, v.rank, ev.tensors
    if r is None or r >= len(ev.ranks) or c.world_size < 2:
        return None
    res = ev.ranks[r]
    if v.quantity == "output":
        clamped = torch.zeros(*t.ids.shape, c.dim, dtype=torch.float64)
        for q in range(c.world_size):
            rows = ev.rows(q)
            if rows.stop > rows.start:
                clamped += t.weight.double()[t.ids.clamp(rows.start, rows.stop - 1)]
        if close(res.get("output"), clamped):
            return "ids outside a rank's rows are clamped into them instead of masked: every rank adds a wrong vector"
    if v.quantity == "padding grad":
        return ("the padding rows take part in the lookup: perhaps ids this rank does not hold are looked up in a "
                "padding row and masked outside autograd (through .data or in place), so their grads collect there")
    if v.quantity == "weight grad":
        rows, got = ev.rows(r), res.get("weight_grad")
        owned = (t.ids >= rows.start) & (t.ids < rows.stop)
        if got is not None and bool((~owned).any()) and got.shape[0] > 0:
            return ("grads of ids another rank owns land in this rank's rows: the mask is applied outside autograd "
                    "(through .data or in place after the lookup), so masked lookups still back-propagate")
    return None
