"""Likely causes of the model's violations: one recogniser per bug class of a whole-model plan."""

from __future__ import annotations

from typing import Optional

import torch
from tpconform.families.block.case import sequence_shards
from tpconform.families.block.verdict import _kind, _slices
from tpconform.families.causes import close
from tpconform.families.model.bounds import model_trace
from tpconform.families.model.verdict import model_logits_match_the_dense_model
from tpconform.spec.violations import Violation


def _param(ev, r: int, name: str) -> dict:
    params = ev.ranks[r].get("parameters") if r < len(ev.ranks) else None
    got = params.get(name) if isinstance(params, dict) else None
    return got if isinstance(got, dict) else {}


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, r = ev.case, v.rank
    if v.property == "model_refuses_what_its_plan_cannot_express" and c.empty_vocab_shard:
        return (f"vocab {c.vocab} over {c.world_size} ranks leaves a rank no vocab row, and it was accepted anyway: "
                "torch's DTensor embedding and loss_parallel() fail on an empty shard; refuse it at parallelise time")
    if v.property == "model_refuses_what_its_plan_cannot_express":
        return (f"n_heads={c.n_heads}, n_kv_heads={c.n_kv_heads}, ffn={c.ffn} over {c.world_size} ranks were accepted "
                "and sharded anyway: a plan must check every block's head counts and FFN width at parallelise time "
                "(or replicate what does not divide)")
    if v.quantity == "run" and "out of bounds" in v.message and not c.loss_parallel and c.world_size > 1:
        return ("the loss indexes past the logits: the lm_head returns its local vocab shard as a plain tensor "
                "(transformers' \"colwise\" keeps the local output) where whole logits were meant: gather them "
                "(\"colwise_rep\") or keep a DTensor sharded on the vocab for loss_parallel()")
    if r is None or r >= len(ev.ranks):
        return None
    if v.property == "model_ranks_hold_only_their_share_of_the_weights":
        shape = ev.dense.grads[v.quantity].shape if v.quantity in ev.dense.grads else None
        held = (ev.ranks[r].get("held") or {}).get(v.quantity)
        if shape is not None and held == shape.numel():
            return (f"rank {r} holds the whole {v.quantity}: the plan replicates it where it should shard it (a "
                    "module left out of the plan, e.g. the lm_head, or a shard taken as a view of the whole tensor)")
    if v.property == "model_forward_runs_the_collectives_its_plan_implies" and c.world_size > 1:
        weight_sized = {-(-c.vocab // c.world_size) * c.hidden}
        calls = ev.ranks[r].get("forward_collectives") or []
        if any(_kind(str(x)) == "allgather" and _elements(str(x)) in weight_sized for x in calls):
            return ("the forward all-gathers a weight (as many elements as a rank's vocab shard of the embedding or "
                    "lm_head weight): it gathers a weight where it should compute on its shard (full_tensor() of a "
                    "sharded parameter); only activations need to cross")
    if v.property == "model_parameter_grads_match_the_dense_model" and c.sequence_parallel and c.world_size > 1:
        name = v.quantity.removesuffix(" grad")
        dense = ev.dense.grads.get(name)
        grads = [_param(ev, q, name).get("grad") for q in range(len(ev.ranks))]
        if dense is not None and all(hasattr(g, "shape") and g.shape == dense.shape for g in grads) and close(
                sum(g.double() for g in grads), dense, c.world_size * ev.dense.bounds[f"grad:{name}"]):
            return (f"each rank's {name} grad is the sum over its own sequence shard only, and the ranks' grads add "
                    "up to the dense one: under sequence parallelism a replicated parameter's grad is not all-reduced "
                    "over the tensor-parallel group (NVIDIA/Megatron-LM #1446); give the norm SequenceParallel() (a "
                    "Replicate DTensor weight) or all-reduce its grad")
    if (v.property == "model_loss_matches_the_dense_model" and c.sequence_parallel and c.world_size > 1
            and not _logits_wrong(ev) and _local_tokens_mean(ev, r)):
        return ("the logits are right and the loss is the mean over this rank's own sequence shard of tokens: under "
                "sequence parallelism the loss must average over every token (gather the sequence, or all-reduce "
                "the summed loss and the token count over the tensor-parallel group)")
    if v.property == "model_tied_weights_stay_tied" and c.tied and v.quantity == "output.weight":
        return ("the lm_head was untied while parallelising: parallelize_module gives the embedding and the lm_head "
                "each a new DTensor parameter, so the one tied parameter becomes two (a copy); re-tie after it, "
                "model.output.weight = model.tok_embeddings.weight (transformers #47253's class)")
    if (v.property == "model_loss_matches_the_dense_model" and c.loss_parallel and c.world_size > 1
            and c.vocab % c.world_size and not _logits_wrong(ev) and _ranks_agree_on_the_loss(ev)):
        return ("the logits are right, the ranks agree on the loss and it is wrong, with a vocab the world size does "
                "not divide: the vocab-parallel loss looks up the target's logit at the wrong offset (a rank's first "
                "vocab column taken as rank x its own column count, as if every shard were equal); take each "
                "shard's own start in the vocab")
    if (v.property == "model_loss_matches_the_dense_model" and c.loss_parallel and c.world_size > 1
            and not _logits_wrong(ev)):
        return ("the logits are right and the loss is not: the vocab-parallel loss takes each rank's own softmax; the "
                "log-sum-exp (the max and the sum of exponentials) must be reduced over the vocab shards (torch's "
                "loss_parallel(), Megatron's vocab_parallel_cross_entropy)")
    if v.property == "model_logits_match_the_dense_model" and c.world_size > 1:
        where = _slices(_param(ev, r, "tok_embeddings.weight").get("where"), torch.Size((c.vocab, c.hidden)))
        if where is not None and (where[0].start, where[0].stop) != (0, c.vocab):
            return ("the embedding is sharded on the vocab and the logits are wrong: ids outside a rank's rows must be "
                    "masked (their rows zero) before the all-reduce; a lookup of an out-of-shard id reads another "
                    "token's row")
    if v.property == "model_parameter_grads_match_the_dense_model" and c.tied and v.quantity.startswith(
            ("tok_embeddings.weight", "output.weight")):
        got = _param(ev, r, v.quantity.removesuffix(" grad"))
        placed = got.get("grad_where") if got.get("grad_where") is not None else got.get("where")
        where = _slices(placed, ev.dense.lm_head_grad.shape)
        if where is not None and close(got.get("grad"), ev.dense.lm_head_grad[where],
                                       ev.dense.bounds["grad:output.weight"][where]):
            return ("the tied weight's grad is the lm_head's use alone: the embedding's contribution is missing (its "
                    "lookup reads a detached or copied weight, so its grad never reaches the one parameter)")
    return None


def _elements(call: str) -> int:
    """The elements a counted call sent (``all_gather_into_tensor(12)`` -> 12; -1 if not written)."""
    inside = call.rpartition("(")[2].rstrip(")")
    return int(inside) if inside.isdigit() else -1


def _local_tokens_mean(ev, r: int) -> bool:
    """Whether rank ``r``'s loss is the dense per-token losses' mean over its own sequence shard alone."""
    c, got = ev.case, ev.ranks[r].get("loss")
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        return False
    sizes = sequence_shards(c.seq, c.world_size)
    lo, hi = sum(sizes[:r]), sum(sizes[: r + 1])
    per_token = model_trace(c, ev.tensors.weights, ev.tensors.tokens, ev.tensors.targets)["per_token"]
    local = per_token.view(c.batch, c.seq)[:, lo:hi]
    return local.numel() > 0 and close(got.reshape(()), local.mean(), ev.dense.bounds["loss"])


def _ranks_agree_on_the_loss(ev) -> bool:
    """Whether every rank's loss is the same number (a loss reduced over the shards; a rank's own softmax
    gives each rank its own)."""
    losses = [res.get("loss") for res in ev.ranks]
    if not all(isinstance(x, torch.Tensor) and x.numel() == 1 for x in losses):
        return False
    return all(bool(torch.equal(x.reshape(()), losses[0].reshape(()))) for x in losses)


def _logits_wrong(ev) -> bool:
    return bool(model_logits_match_the_dense_model(ev))
