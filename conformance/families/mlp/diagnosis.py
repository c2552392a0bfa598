"""Likely causes of the MLP's violations: the two layers' own bugs, seen through the composition."""

from __future__ import annotations

from typing import Optional

from tpconform.families.causes import divided_by_world_size, summed_over_ranks
from tpconform.spec.violations import Violation


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, r = ev.case, v.rank
    if v.quantity == "run" and "shapes cannot be multiplied" in v.message:
        return ("the two layers split the hidden dim differently: a rank's slice of the column layer's output does "
                "not fit the row layer's weight shard (each layer may conform alone, the composition does not)")
    if r is None or r >= len(ev.ranks):
        return None
    res, dn = ev.ranks[r], ev.dense
    if v.property == "mlp_forward_uses_one_all_reduce":
        calls = res.get("forward_collectives") or []
        if any(call.startswith("allgather") or call.startswith("all_gather") for call in calls):
            return ("the forward all-gathers: the column layer gathers its output although gather_output=False "
                    "(and the row layer splits it again), an extra collective of B × hidden per rank")
        return None
    col, row = ev.partition("w1_shard", 0), ev.partition("w2_shard", 1)
    if col != row:
        return (f"the two layers split the hidden dim differently (column rows per rank {col}, row columns per "
                f"rank {row}): each layer may conform alone, the composition does not")
    if v.quantity == "input grad" and summed_over_ranks(ev.ranks, "input_grad", dn.input_grad, r):
        return "each rank returns its partial input grad: the column layer's backward does not all-reduce it"
    keys = {"column weight grad": ("w1_grad", dn.w1_grad[ev.hidden_slice("w1_shard", 0, r)]),
            "row weight grad": ("w2_grad", dn.w2_grad[:, ev.hidden_slice("w2_shard", 1, r)])}
    if v.quantity in keys:
        key, expected = keys[v.quantity]
        if divided_by_world_size(res.get(key), expected, c.world_size):
            return f"the {v.quantity} is divided by the world size ({c.world_size}): averaged where it must be summed"
    return None
