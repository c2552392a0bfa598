"""Likely causes of the block's violations: one recogniser per bug class of a parallelisation plan."""

from __future__ import annotations

from typing import Optional

from tpconform.families.block.verdict import _parameters, _rows
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
    if (v.property == "block_forward_runs_the_collectives_its_plan_implies" and c.sequence_parallel
            and "allreduce" in msg.replace("_", "")):
        return ("a sequence-parallel forward all-reduces: a sublayer's row projection sums the whole sequence and "
                "keeps its shard afterwards; RowwiseParallel(output_layouts=Shard(1)) reduce-scatters it instead, "
                "half the bytes")
    if (v.property == "block_forward_runs_the_collectives_its_plan_implies" and not c.sequence_parallel
            and "all_gather" in msg.replace("allgather", "all_gather")):
        return ("the forward all-gathers: a column projection gathers its output (output_layouts=Replicate()) and the "
                "row projection after it takes the whole width; keep the activation sharded between them")
    r = v.rank
    if r is None or r >= len(ev.ranks):
        return None
    if v.property == "block_output_matches_the_dense_block" and c.sequence_parallel and r > 0 and _first_shard_right(ev):
        return ("under sequence parallelism rank 0's shard of the output is right and a later rank's is not: the "
                "later shards' tokens are at the wrong positions; RoPE positions taken from the local sequence shard "
                "(each shard restarting at 0) instead of the token's place in the whole sequence")
    if v.property == "block_parameter_grads_match_the_dense_block":
        other = _grad_of_another(ev, r, v.quantity.removesuffix(" grad"))
        if other:
            return (f"rank {r}'s {v.quantity} is the dense {other}'s grad: the two are paired with each other's "
                    "parameter (a builder's name map that swaps them, e.g. the gate and up projections, or a plan "
                    "that loads one's weight into the other)")
    if v.property == "block_second_pass_after_an_optimizer_step_matches" and not v.quantity.endswith(
            ("weight after one sgd step", "bias after one sgd step", "weight after one adamw step",
             "bias after one adamw step")) and _parameters_stepped_right(ev):
        return ("every parameter holds its stepped value, yet the second pass is wrong: the module computes with a "
                "stale copy of a parameter taken before the step (a cached, fused or pre-cast weight not refreshed "
                "when the optimizer updates the parameter)")
    if v.property == "block_parameter_grads_match_the_dense_block" and c.sequence_parallel and c.world_size > 1:
        name = v.quantity.removesuffix(" grad")
        dense = ev.dense.grads.get(name)
        grads = [((res.get("parameters") or {}).get(name) or {}).get("grad") for res in ev.ranks]
        if dense is not None and all(hasattr(g, "shape") and g.shape == dense.shape for g in grads):
            if close(sum(g.double() for g in grads), dense, c.world_size * ev.dense.bounds[f"grad:{name}"]):
                return (f"each rank's {name} grad is the sum over its own sequence shard only, and the ranks' grads "
                        "add up to the dense one: under sequence parallelism a replicated parameter's grad is "
                        "not all-reduced over the tensor-parallel group (NVIDIA/Megatron-LM #1446); give the norm "
                        "SequenceParallel() (a Replicate DTensor weight) or all-reduce its grad")
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


def _parameters_stepped_right(ev) -> bool:
    """Whether every rank's parameters after the step hold the dense stepped values, within their bounds."""
    d = ev.dense
    after = d.after_step
    if after is None or d.weights is None:
        return False
    replies = [res.get("after_step") if isinstance(res.get("after_step"), dict) else {} for res in ev.ranks]
    bounds = {n: after.bounds[f"weight:{n}"] for n in d.weights}
    return not _parameters("", replies, d.weights, bounds, "value", "after the step")


def _ranks_differ(ev, key: str) -> bool:
    """Ranks' ``key`` values (each the whole tensor) differ by more than the dense bound (never under sequence
    parallelism: there each rank holds its own sequence shard)."""
    values = [res.get(key) for res in ev.ranks]
    if ev.case.sequence_parallel or len(values) < 2 or not all(hasattr(t, "shape") for t in values):
        return False
    first = values[0].double()
    return any(not close(t, first, ev.dense.bounds["input_grad"]) for t in values[1:])


def _first_shard_right(ev) -> bool:
    """Whether rank 0's output (its sequence shard) is within its bound."""
    got, rows = ev.ranks[0].get("output"), (slice(None), _rows(ev.case, 0))
    want, bound = ev.dense.output[rows], ev.dense.bounds["output"][rows]
    return hasattr(got, "shape") and got.shape == want.shape and close(got, want, bound)


def _grad_of_another(ev, r: int, name: str) -> Optional[str]:
    """The other dense parameter whose grad (at the same place) rank ``r``'s grad of ``name`` is, if any."""
    got = ((ev.ranks[r].get("parameters") or {}).get(name) or {})
    grad, where = got.get("grad"), got.get("where")
    dense = ev.dense.grads
    if not hasattr(grad, "shape") or name not in dense or not isinstance(where, list):
        return None
    try:
        at = tuple(slice(a, b) for a, b in where)
    except (TypeError, ValueError):
        return None
    for other, g in dense.items():
        if other != name and g.shape == dense[name].shape and g[at].shape == grad.shape and not close(
                g[at], dense[name][at], ev.dense.bounds[f"grad:{other}"][at]) and close(
                grad, g[at], ev.dense.bounds[f"grad:{other}"][at]):
            return other
    return None
