"""Likely causes of a sequence-parallel layer's violations."""

from __future__ import annotations

from typing import Optional

from tpconform.families.causes import summed_over_ranks
from tpconform.spec.violations import Violation


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, r = ev.case, v.rank
    if r is None or r >= len(ev.ranks) or c.world_size < 2:
        return None
    res = ev.ranks[r]
    if v.quantity == "bias grad" and c.kind == "row" and ev.dense.bias_grad is not None \
            and summed_over_ranks(ev.ranks, "bias_grad", ev.dense.bias_grad, r):
        return ("the bias grad is partial — it covers only this rank's sequence shard — and nothing reduces it over "
                "the ranks; all-reduce it (Megatron leaves this to finalize_model_grads: a library that does must "
                "declare it)")
    out = res.get("output")
    if v.quantity == "output" and c.kind == "row" and out is not None and out.dim() >= 1 \
            and c.batch_shape and out.shape[0] == c.batch_shape[0] != c.batch_shape[0] // c.world_size:
        return ("every rank returns the whole sequence: the row layer all-reduces where sequence parallelism "
                "reduce-scatters (each rank keeps its sequence shard)")
    return None
