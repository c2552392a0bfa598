"""Likely causes of a replicated norm's violations: the ways a replicated parameter's grad goes wrong on a
sequence-sharded input (Megatron-LM #1446), and a backward that forgets the norm's statistic."""

from __future__ import annotations

from typing import Optional

from tpconform.families.causes import close, ratio
from tpconform.spec.violations import Violation

NOT_REDUCED = ("the weight grad is partial: each rank holds only its own sequence shard's share, and nothing "
               "all-reduces it over the TP group (a replicated parameter on a sequence-parallel input needs its "
               "grad summed over the group: Megatron-LM #1446; a library that leaves it to the training loop must "
               "declare that step, impl.finalize_grads)")


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, r, d = ev.case, v.rank, ev.dense
    if r is None or r >= len(ev.ranks):
        return None
    res = ev.ranks[r]
    if v.quantity == "weight grad replica":
        mine, first = res.get("weight_grad"), ev.ranks[0].get("weight_grad")
        if close(mine, d.partial_weight_grads[r]) and close(first, d.partial_weight_grads[0]):
            return NOT_REDUCED
        if close(mine, d.weight_grad, d.weight_grad_bound) and close(first, d.weight_grad, d.weight_grad_bound):
            return ("each rank's weight grad is the dense one but not the same bits: the ranks sum the partial grads "
                    "each in its own order (an all-gather summed locally, a rank-dependent reduction) instead of one "
                    "all-reduce that hands every rank the same result")
        return None
    if v.quantity == "weight grad" and c.world_size > 1:
        got = res.get("weight_grad")
        if close(got, d.partial_weight_grads[r]) and not close(got, d.weight_grad):
            return NOT_REDUCED
        k = ratio(got, d.weight_grad)
        if k is not None and abs(k * c.world_size - 1) < 1e-2:
            return ("the weight grad is divided by the world size: the partial grads are averaged (as data "
                    "parallelism averages over replicas of the batch) where tensor parallelism must sum them — each "
                    "rank's tokens are a different part of one batch")
        if k is not None and abs(k - c.world_size) < 1e-2 * c.world_size:
            return "the weight grad is world_size × too large: the whole grad is all-reduced (it was summed twice)"
        return None
    if v.quantity == "input grad":
        rows = c.tokens(r)
        if close(res.get("input_grad"), d.input_grad[rows] + d.statistic_term[rows], d.input_grad_bound[rows]):
            return ("the input grad misses the normalisation's own term, x·k³·Σ g·w·x / n: the backward treats "
                    "1/sqrt(mean(x²) + eps) as a constant (a hand-written backward, or the statistic detached)")
    return None
