"""Likely causes of the block's violations: one recogniser per bug class of a parallelisation plan."""

from __future__ import annotations

from typing import Optional

from tpconform.families.causes import close, ratio
from tpconform.spec.violations import Violation


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, msg = ev.case, v.message
    if v.property == "block_refuses_what_its_plan_cannot_express" and c.n_kv_heads < c.world_size:
        return (f"{c.n_kv_heads} kv heads over {c.world_size} ranks were accepted and split anyway: a plan must "
                "refuse kv heads fewer than ranks at parallelise time, or replicate each kv head to the ranks "
                "whose query heads use it")
    if v.quantity == "run" and "is invalid for input of size" in msg and c.world_size > 1:
        return ("the attention views its rank's projections with the global head counts: a plan that shards wq/wk/wv "
                f"by heads must divide n_heads and n_kv_heads by the world size ({c.world_size})")
    if v.quantity == "run" and ("cannot be multiplied" in msg or "same reduction dim" in msg) and c.world_size > 1:
        return ("a projection gets an input of the wrong width: the output projection wo takes the rank's heads "
                "(sharded), so it must be row-parallel (RowwiseParallel), not column-parallel")
    if v.property == "block_forward_runs_one_all_reduce_per_sublayer" and "all_gather" in msg.replace("allgather", "all_gather"):
        return ("the forward all-gathers: a column projection gathers its output (output_layouts=Replicate()) and the "
                "row projection after it takes the whole width; keep the activation sharded between them")
    r = v.rank
    if r is None or r >= len(ev.ranks):
        return None
    if v.quantity == "input grad" and _ranks_differ(ev, "input_grad"):
        return ("the ranks' input grads differ where each must hold the whole: part of it is partial on each rank, "
                "a column-parallel projection's input grad not all-reduced (its input must enter through copy-to, "
                "or as a Replicate DTensor)")
    if v.property == "block_parameter_grads_match_the_dense_block" and c.world_size > 1:
        name = v.quantity.removesuffix(" grad")
        got = (ev.ranks[r].get("parameters") or {}).get(name) or {}
        dense = ev.dense.grads.get(name)
        k = ratio(got.get("grad"), dense) if dense is not None else None
        if k is not None and abs(k - c.world_size) < 1e-2 * c.world_size:
            return (f"the replicated {name}'s grad is {c.world_size}x the dense one: it is all-reduced over the ranks "
                    "although every rank already holds the whole grad (a sequence-parallel grad reduction applied "
                    "without sequence parallelism)")
    return None


def _ranks_differ(ev, key: str) -> bool:
    """Ranks' ``key`` values (each the whole tensor) differ by more than the dense bound."""
    values = [res.get(key) for res in ev.ranks]
    if len(values) < 2 or not all(hasattr(t, "shape") for t in values):
        return False
    first = values[0].double()
    return any(not close(t, first, ev.dense.bounds["input_grad"]) for t in values[1:])
