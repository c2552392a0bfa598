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
5. **what the plan cannot express is refused**: a block's heads, kv heads or FFN width not divisible by the
   world size, or a vocab that leaves a rank no row, is refused on every rank while parallelising, or
   computed right; never an error mid-forward,
   never a wrong result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tpconform.families.block.verdict import _slices
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
           "model_tied_weights_stay_tied", "model_refuses_what_its_plan_cannot_express")
# evidence measured inside the candidate's process (which parameter objects it holds): no points
SELF_REPORTED = frozenset({"model_tied_weights_stay_tied"})


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
                out.append(Violation(name, f"rank {r}'s {pname}: where its grad's part sits in the dense parameter is "
                                           f"not known: {placed!r}", r, pname))
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
            if alias != first:
                what = (f"is its own parameter, no longer {first}'s" if alias == pname
                        else f"is {alias!r}'s parameter, where the dense model's is {first}'s")
                out.append(Violation(name, f"rank {r}'s {pname} {what} after parallelising "
                                           f"({'tied' if ev.case.tied else 'untied'} embeddings)", r, pname))
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
    how = "parallelize_model" if ev.case.handed_in == "plan" else "applying model_tp_plan"
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
