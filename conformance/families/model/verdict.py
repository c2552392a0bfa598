"""A tiny whole model parallelised by the impl's own plan (or its HF-style ``tp_plan``), checked against the
dense model (verdict side).

The suite's dense model (:mod:`tpconform.families.model.dense`: token embedding, ``n_layers`` of the block
family's dense block, final RMSNorm, lm_head, mean cross entropy; the lm_head's weight the embedding's when
tied) is built on every rank in the case's dtype and parallelised by the impl. Every rank is given the whole
token ids and targets, computes the logits and the loss (inside torch's ``loss_parallel()`` when the case
asks for it) and back-propagates the loss. Truth: the same model in float64 from the same (already rounded)
numbers; bounds: :mod:`~.bounds`.

1. **logits**: each rank's logits (whole, or its vocab shard where its placement puts it) are the dense ones;
2. **loss**: every rank's loss is the dense loss;
3. **parameter grads**: every dense parameter, under every name it has (tied: ``output.weight`` too), is on
   every rank, its grad the matching slice of the dense grad (tied: the sum of both uses), where the grad's
   own placement puts it (a DTensor grad may be placed otherwise than its parameter);
4. **tied weights stay tied**: the parallelised model's parameters are shared exactly as the dense model's
   are (tied: ``output.weight`` is the embedding's parameter object on every rank; self-reported: the
   identity is seen in the rank's process);
5. **collectives**: the logits' forward runs the collectives the vocab-parallel plan implies and no more:
   one for the embedding (an all-reduce of the vocab shards' rows; under SP a reduce-scatter to the sequence
   shard), each block's (two all-reduces; under SP two all-gathers and two reduce-scatters), under SP one
   all-gather of the lm_head's input, and one all-gather of the logits unless they stay vocab-sharded for
   the loss (self-reported: counted in the rank's process);
6. **memory**: each rank holds only its share of every weight matrix (embedding, projections, lm_head):
   the storage its local tensor keeps alive is at most the largest shard an even split of one of its dims
   gives (``ceil(rows/p)·cols`` or ``rows·ceil(cols/p)``), on a config the plan can express (self-reported:
   measured in the rank's process);
7. **what the plan cannot express is refused**: a block's heads, kv heads or FFN width not divisible by the
   world size, or a vocab that leaves a rank no row, is refused on every rank while parallelising, or
   computed right; never an error mid-forward,
   never a wrong result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tpconform.families.block.verdict import _kind, _slices
from tpconform.families.common import (
    compare_on_rank,
    preconditions,
    refused_or_computed_right,
    run_on_every_rank,
    truth_while_ranks_run,
)
from tpconform.families.model.bounds import model_bounds, model_trace
from tpconform.families.model.case import ModelCase
from tpconform.families.model.dense import aliases, build_model, model_weights
from tpconform.spec.violations import Violation, construction_raised


@dataclass
class ModelTensors:
    weights: dict[str, torch.Tensor]  # every parameter by name (tied: the embedding's only), the case's dtype
    tokens: torch.Tensor  # int64 [batch, seq]
    targets: torch.Tensor  # int64 [batch, seq]


def make_tensors(case: ModelCase) -> ModelTensors:
    gen = torch.Generator().manual_seed(case.seed)
    weights = model_weights(case, gen)
    shape = (case.batch, case.seq)
    return ModelTensors(weights, torch.randint(0, case.vocab, shape, generator=gen),
                        torch.randint(0, case.vocab, shape, generator=gen))


@dataclass
class DenseModel:
    logits: torch.Tensor
    loss: torch.Tensor
    grads: dict[str, torch.Tensor]  # by every name (tied: output.weight is the embedding's)
    aliases: dict[str, str]  # every name -> the first name of its parameter
    bounds: dict[str, torch.Tensor]  # logits, loss, grad:<name>
    lm_head_grad: torch.Tensor  # the lm_head's use of its weight alone (tied: one of the two summed)


def dense_model(case: ModelCase, t: ModelTensors) -> DenseModel:
    """The float64 model (the same module the ranks get), its grads, and their bounds."""
    model = build_model(case, torch.float64, t.weights)
    logits = model(t.tokens)
    loss = model.loss_fn(logits, t.targets)
    loss.backward()
    grads = {n: p.grad.detach() for n, p in model.named_parameters(remove_duplicate=False)}
    tr = model_trace(case, t.weights, t.tokens, t.targets)
    bounds = model_bounds(case, tr, case.torch_dtype, case.world_size)
    return DenseModel(logits.detach(), loss.detach(), grads, aliases(model), bounds, tr["lm_head_grad"])


@dataclass
class ModelEvidence:
    case: ModelCase
    tensors: ModelTensors
    ranks: list[dict]
    crash: Optional[str]
    dense: DenseModel


ModelProperty = Callable[[ModelEvidence], list[Violation]]
MODEL_SPEC: dict[str, ModelProperty] = {}
FORWARD = ("model_logits_match_the_dense_model", "model_loss_matches_the_dense_model",
           "model_tied_weights_stay_tied", "model_refuses_what_its_plan_cannot_express",
           "model_forward_runs_the_collectives_its_plan_implies", "model_ranks_hold_only_their_share_of_the_weights")
# evidence measured inside the candidate's process (which parameter objects it holds, its collectives, its
# storage): no points
SELF_REPORTED = frozenset({"model_tied_weights_stay_tied", "model_forward_runs_the_collectives_its_plan_implies",
                           "model_ranks_hold_only_their_share_of_the_weights"})


def model_property(fn: ModelProperty) -> ModelProperty:
    MODEL_SPEC[fn.__name__] = fn
    return fn


@model_property
def model_logits_match_the_dense_model(ev: ModelEvidence) -> list[Violation]:
    """Every rank's logits are the dense model's: the whole logits, or its vocab shard where its placement
    (a DTensor's, or ``tp_dense_slice``) puts it."""
    name, d, out = "model_logits_match_the_dense_model", ev.dense, []
    for r, res in enumerate(ev.ranks):
        where = _slices(res.get("logits_where"), d.logits.shape)
        if where is None:
            out.append(Violation(name, f"rank {r}'s logits: where they sit in the dense logits is not known (a plain "
                                       f"tensor of another shape without tp_dense_slice): {res.get('logits_where')!r}",
                                 r, "logits"))
            continue
        out += compare_on_rank(name, r, res.get("logits"), d.logits[where], d.bounds["logits"][where], "logits")
    return out


@model_property
def model_loss_matches_the_dense_model(ev: ModelEvidence) -> list[Violation]:
    """Every rank's loss is the dense model's mean cross entropy (a vocab-parallel loss reduces the
    log-sum-exp and the target's logit over the vocab shards)."""
    d = ev.dense
    return [v for r, res in enumerate(ev.ranks)
            for v in compare_on_rank("model_loss_matches_the_dense_model", r, res.get("loss"), d.loss,
                                     d.bounds["loss"], "loss")]


@model_property
def model_parameter_grads_match_the_dense_model(ev: ModelEvidence) -> list[Violation]:
    """Every dense parameter, under every name it has, is on every rank, its grad the dense grad's slice
    where the rank's part sits (a replicated one whole; the tied weight's the sum of both uses)."""
    name, d, out = "model_parameter_grads_match_the_dense_model", ev.dense, []
    for r, res in enumerate(ev.ranks):
        params = res.get("parameters")
        params = params if isinstance(params, dict) else {}
        for pname, grad in d.grads.items():
            got = params.get(pname)
            if not isinstance(got, dict):
                out.append(Violation(name, f"rank {r} has no parameter {pname} after parallelising", r, pname))
                continue
            placed = got.get("grad_where") if got.get("grad_where") is not None else got.get("where")
            where = _slices(placed, grad.shape)
            if where is None:
                why = got.get("where_note")  # a builder's name map that cannot be read says why
                out.append(Violation(name, f"rank {r}'s {pname}: where its grad's part sits in the dense parameter is "
                                           f"not known{f' ({why})' if isinstance(why, str) else ''}: {placed!r}",
                                     r, pname))
                continue
            out += compare_on_rank(name, r, got.get("grad"), grad[where], d.bounds[f"grad:{pname}"][where],
                                   f"{pname} grad")
    return out


@model_property
def model_tied_weights_stay_tied(ev: ModelEvidence) -> list[Violation]:
    """The parallelised model shares its parameters as the dense model does: tied, the lm_head's weight is
    the embedding's parameter (one object, one grad) on every rank, not a copy and not a fresh one."""
    name, d, out = "model_tied_weights_stay_tied", ev.dense, []
    for r, res in enumerate(ev.ranks):
        params = res.get("parameters")
        params = params if isinstance(params, dict) else {}
        for pname, first in d.aliases.items():
            got = params.get(pname)
            alias = got.get("alias") if isinstance(got, dict) else None
            if alias is None and isinstance(got, dict) and isinstance(got.get("where_note"), str):
                continue  # a builder's name map that cannot be read: the grads property says why
            if alias != first:
                what = (f"is its own parameter, no longer {first}'s" if alias == pname
                        else f"is {alias!r}'s parameter, where the dense model's is {first}'s")
                out.append(Violation(name, f"rank {r}'s {pname} {what} after parallelising "
                                           f"({'tied' if ev.case.tied else 'untied'} embeddings)", r, pname))
    return out


def implied_collectives(c: ModelCase) -> dict[str, int]:
    """The logits' forward collectives per kind that the vocab-parallel plan implies (``families/block/
    verdict._kind``'s names): the embedding's, every block's, the lm_head's input gathered under SP, the
    logits gathered unless they stay vocab-sharded."""
    L, gathered_logits = c.n_layers, 0 if c.loss_parallel else 1
    if c.sequence_parallel:
        return {"reducescatter": 1 + 2 * L, "allgather": 2 * L + 1 + gathered_logits}
    return {"allreduce": 1 + 2 * L, "allgather": gathered_logits}


def _explain_collectives(c: ModelCase) -> str:
    L = c.n_layers
    if c.sequence_parallel:
        return (f"the embedding's reduce-scatter to the sequence shard, two all-gathers and two reduce-scatters per "
                f"block ({L} block(s)), one all-gather of the lm_head's input"
                + ("" if c.loss_parallel else " and one all-gather of the logits"))
    return (f"the embedding's all-reduce (or, for a table sharded on the hidden dim, an all-gather), two "
            f"all-reduces per block ({L} block(s))" + ("" if c.loss_parallel else " and one all-gather of the logits"))


@model_property
def model_forward_runs_the_collectives_its_plan_implies(ev: ModelEvidence) -> list[Violation]:
    """The logits' forward runs exactly the collectives a vocab-parallel plan implies (:func:`implied_collectives`):
    activations stay sharded between a column and a row projection, no weight is gathered, no sublayer
    all-reduces what it could reduce-scatter under SP. (A world of one rank may run fewer.)"""
    name, c, out = "model_forward_runs_the_collectives_its_plan_implies", ev.case, []
    wanted = implied_collectives(c)
    # a table sharded on the hidden dim gathers the embedding's output where a vocab-sharded one all-reduces it
    allowed = [wanted] + ([{**wanted, "allreduce": wanted["allreduce"] - 1, "allgather": wanted["allgather"] + 1}]
                          if not c.sequence_parallel else [])
    for r, res in enumerate(ev.ranks):
        calls = res.get("forward_collectives")
        calls = [str(x) for x in calls] if isinstance(calls, list) else []
        kinds = [_kind(x) for x in calls]
        counts = {k: kinds.count(k) for k in set(kinds)}
        fits = any(set(counts) <= set(w) and all(
            counts.get(k, 0) == n or (c.world_size == 1 and counts.get(k, 0) <= n) for k, n in w.items())
            for w in allowed)
        if not fits:
            out.append(Violation(name, f"rank {r}'s forward (embedding to logits) ran {len(calls)} collective(s) {calls} "
                                       f"(elements sent in parentheses); this model needs {sum(wanted.values())}: "
                                       f"{_explain_collectives(c)}", r, "communication"))
    return out


def weight_share(shape: torch.Size, p: int) -> int:
    """The most elements of a weight of ``shape`` one of ``p`` ranks holds when one dim is split (``torch.chunk``'s
    largest piece); a vector (norm weight, bias): the whole of it."""
    if len(shape) < 2:
        return int(shape.numel())
    rows, cols = int(shape[0]), int(shape[1])
    return max(-(-rows // p) * cols, rows * -(-cols // p))


@model_property
def model_ranks_hold_only_their_share_of_the_weights(ev: ModelEvidence) -> list[Violation]:
    """On a config the plan can express, each rank keeps alive at most its share of every weight matrix (the
    embedding, every projection, the lm_head): the storage behind its local tensor is no larger than the largest
    piece of an even split (:func:`weight_share`) — not a replicated matrix, and not a shard cut as a view of a
    whole copy."""
    name, c, out = "model_ranks_hold_only_their_share_of_the_weights", ev.case, []
    if not c.expressible:
        return []
    shapes = {n: g.shape for n, g in ev.dense.grads.items() if ev.dense.aliases.get(n, n) == n}
    for r, res in enumerate(ev.ranks):
        held = res.get("held")
        held = held if isinstance(held, dict) else {}
        for pname, shape in shapes.items():
            share, got = weight_share(shape, c.world_size), held.get(pname)
            if len(shape) < 2:
                continue
            if type(got) is not int:
                out.append(Violation(name, f"rank {r} reported no storage size for {pname}", r, pname))
            elif got > share:
                out.append(Violation(name, f"rank {r} keeps {got} elements of storage alive for {pname} {list(shape)}; "
                                           f"its share over {c.world_size} ranks is at most {share} (a replicated "
                                           "matrix, or a shard that is a view of the whole)", r, pname))
    return out


@model_property
def model_refuses_what_its_plan_cannot_express(ev: ModelEvidence) -> list[Violation]:
    """A config whose heads, kv heads or FFN width do not divide by the world size, or whose vocab leaves a rank
    no row, is refused on every rank while parallelising, or computed right: never an error mid-forward, never a silently wrong result."""
    name, c = "model_refuses_what_its_plan_cannot_express", ev.case
    if c.expressible:
        return []
    return refused_or_computed_right(name, _inexpressible(c), ev.crash, ev.ranks,
                                     lambda failed: _construction_failed(ev, failed),
                                     lambda: model_logits_match_the_dense_model(ev) + model_loss_matches_the_dense_model(ev))


def _inexpressible(c: ModelCase) -> str:
    return (f"n_heads={c.n_heads}, n_kv_heads={c.n_kv_heads}, ffn={c.ffn}, vocab={c.vocab} over {c.world_size} "
            "ranks (not all divisible, or a rank holds no vocab row)")


def _construction_failed(ev: ModelEvidence, failed: list[int]) -> str:
    how = {"plan": "parallelize_model", "tp_plan": "applying model_tp_plan"}.get(ev.case.handed_in, "build_tp_model")
    return construction_raised(failed, {r: res.get("construct_error") for r, res in enumerate(ev.ranks)}, f" ({how})")


def evidence(suite, case: ModelCase) -> Optional[ModelEvidence]:
    """Run ``case`` on ``case.world_size`` ranks; ``None`` when the impl offers no way in for its variant."""
    t = make_tensors(case)
    meanwhile, dense = truth_while_ranks_run(lambda: dense_model(case, t))
    ranks, crash = run_on_every_rank(suite, case, "run_model",
                                     {"weights": t.weights, "tokens": t.tokens, "targets": t.targets}, meanwhile)
    if ranks and ranks[0].get("not_provided"):
        return None
    return ModelEvidence(case, t, ranks, crash, dense())


def violations(suite, case: ModelCase, prop: str, ev: Optional[ModelEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    if prop == "model_refuses_what_its_plan_cannot_express":
        return MODEL_SPEC[prop](ev)
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: _construction_failed(ev, failed),
                        rejection_declared=not ev.case.expressible)
    return pre if pre is not None else MODEL_SPEC[prop](ev)
