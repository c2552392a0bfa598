"""The model family, worker side: build the dense model in the case's dtype, hand it to the impl's
``parallelize_model`` (or apply its ``model_tp_plan``, or have its ``build_tp_model`` build its own), run the logits, the loss (inside torch's
``loss_parallel()`` when the case asks for it) and its backward.

The logits and each parameter come back as plain tensors with where the local part sits in the dense
tensor (``block.worker.placement``: a DTensor's placements, a plain tensor's ``tp_dense_slice``, or whole);
the parameters by every name they are reachable under (tied: ``output.weight`` too) with the name of the
first one that is the same object (``alias``)."""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate
from torch.distributed.tensor.parallel import loss_parallel
from tpconform.families.block.name_map import their_parameters
from tpconform.families.block.worker import _cut, placement
from tpconform.families.layer_steps import built_everywhere, copy_of
from tpconform.families.model.case import ModelCase
from tpconform.families.model.dense import aliases, build_model
from tpconform.families.model.tp_plan import apply_tp_plan
from tpconform.transport.worker_tools import CollectiveVolume, as_tensor, error_text


def _local(t):
    return t.to_local() if isinstance(t, DTensor) else t


def offered(impl, handed_in: str):
    """The impl's way to parallelise the model for this variant, as ``f(model, group)`` -> the module, or for a
    builder ``(module, name map)``; ``None``: not offered (optional methods no protocol declares: duck-typed)."""
    if handed_in == "builder":
        return getattr(impl, "build_tp_model", None)
    if handed_in == "plan":
        return getattr(impl, "parallelize_model", None)
    tp_plan_of = getattr(impl, "model_tp_plan", None)
    if tp_plan_of is None:
        return None

    def apply(model, group):
        tp_plan = tp_plan_of(model)
        return None if tp_plan is None else apply_tp_plan(model, group, tp_plan)
    return apply


def _settled(g):
    """A DTensor grad with its ``Partial`` placements reduced (a replicated norm weight under sequence
    parallelism: each rank's sum over its own tokens, until the optimizer or this reads it); other placements
    kept (DTensor's embedding backward gives a ``Shard(0)`` weight a ``Replicate`` grad)."""
    if not isinstance(g, DTensor) or not any(pl.is_partial() for pl in g.placements):
        return g
    return g.redistribute(g.device_mesh, [Replicate() if pl.is_partial() else pl for pl in g.placements])


def _parameters(model, dense_shapes: dict) -> dict:
    out, alias = {}, aliases(model)
    for name, p in model.named_parameters(remove_duplicate=False):
        grad = _settled(p.grad)
        out[name] = {"value": copy_of(_local(p), f"parameter {name}"),
                     "grad": copy_of(_local(grad), f"the grad of {name}"),
                     "where": placement(p, dense_shapes[name]) if name in dense_shapes else None,
                     # a DTensor grad may be placed otherwise than its parameter (DTensor's embedding backward
                     # gives a Shard(0) weight a Replicate grad): where the grad's own local part sits
                     "grad_where": (placement(grad, dense_shapes[name]) if isinstance(grad, DTensor)
                                    and name in dense_shapes else None),
                     "alias": alias[name]}
    return out


def _built_parameters(params: dict, dense_shapes: dict) -> dict:
    """A builder's parameters (``their_parameters``: by dense name, with where each rank's part sits from its
    name map, and the ranges of a fused one), in the plan's reply form; ``alias``: the first dense name whose
    parameter is the same object (tied: the embedding's)."""
    out: dict = {}
    first: dict[int, str] = {}
    for name in dense_shapes:
        if name not in params:
            continue
        p, where, part = params[name]
        grad = None if p is None else _settled(p.grad)
        entry = {"value": None if p is None else copy_of(_cut(_local(p), part), f"parameter {name}"),
                 "grad": None if p is None else copy_of(_cut(_local(grad), part), f"the grad of {name}"),
                 "where": where if not isinstance(where, str) else None,
                 # a DTensor grad may be placed otherwise than its parameter (DTensor's embedding backward gives
                 # a Shard(0) weight a Replicate grad): where the grad's own local part sits, as for a plan
                 "grad_where": (placement(grad, dense_shapes[name]) if isinstance(grad, DTensor) and part is None
                                else None),
                 # a fused parameter holds several dense ones (their parts): each is its own; a whole one named
                 # twice (tied) is the first name's
                 "alias": None if p is None else name if part is not None else first.setdefault(id(p), name)}
        if isinstance(where, str):
            entry["where_note"] = where
        out[name] = entry
    return out


def _built_held(params: dict, dense_shapes: dict) -> dict:
    """Per dense name (the first of a tied one's), the elements of storage its parameter keeps alive on this
    rank; a fused parameter's (``Part``) counted in proportion to the rows this dense one has in it."""
    out, seen = {}, set()
    for name in dense_shapes:
        p, _, part = params.get(name, (None, None, None))
        if p is None or (part is None and id(p) in seen):
            continue  # a whole parameter named twice (tied): counted once; a fused one's parts each count
        if part is None:
            seen.add(id(p))
        t = _local(p)
        held = t.untyped_storage().nbytes() // max(t.element_size(), 1)
        if part is not None and part.dim < t.dim() and t.shape[part.dim]:
            held = held * sum(b - a for a, b in part.ranges) // t.shape[part.dim]
        out[name] = held
    return out


def run_model(message: dict, impl) -> dict:
    """Parallelise the dense model, compute the logits and the loss of ``tokens`` against ``targets``, backward."""
    d, case = message["data"], ModelCase.from_dict(message["case"])
    group = dist.group.WORLD
    result: dict = {"rank": dist.get_rank(group)}
    offer = offered(impl, case.handed_in)
    dense = build_model(case, case.torch_dtype, {k: v.clone() for k, v in d["weights"].items()})
    dense_shapes = {name: p.shape for name, p in dense.named_parameters(remove_duplicate=False)}
    loss_fn = dense.loss_fn
    model, error, built = None, None, None
    try:
        model = offer(dense, group) if offer is not None else None
        if model is None:
            return {"not_provided": True}
        if case.handed_in == "builder":
            if not (isinstance(model, tuple) and len(model) == 2):
                raise TypeError(f"build_tp_model must return (module, name map), got {type(model).__name__}")
            model, name_map = model
            built = their_parameters(model, name_map, dense_shapes, dist.get_rank(group), dist.get_world_size(group))
    except Exception as exc:
        error = error_text(exc)
    if built_everywhere(error, result, group) is None:
        return result

    tokens, targets = d["tokens"].clone(), d["targets"].clone()
    loss_fn = getattr(model, "loss_fn", loss_fn)
    with loss_parallel() if case.loss_parallel else contextlib.nullcontext():
        with CollectiveVolume() as forward:
            logits = model(tokens)
        result["forward_collectives"] = forward.calls
        result["logits"] = as_tensor(_local(logits), "the model's logits").detach().clone()
        result["logits_where"] = placement(logits, torch.Size((case.batch, case.seq, case.vocab)))
        loss = loss_fn(logits, targets)
        result["loss"] = as_tensor(_local(loss), "the loss").detach().clone()
        if loss.requires_grad:
            loss.backward()
    if built is not None:
        result["parameters"], result["held"] = _built_parameters(built, dense_shapes), _built_held(built, dense_shapes)
    else:
        result["parameters"], result["held"] = _parameters(model, dense_shapes), held_elements(model)
    return result


def held_elements(model) -> dict:
    """Per parameter name (the first of a tied one's names), the elements of storage its local tensor keeps
    alive on this rank: a shard cut as a view of the whole tensor keeps the whole alive."""
    out, seen = {}, set()
    for name, p in model.named_parameters():
        t = _local(p)
        storage = t.untyped_storage()
        if storage.data_ptr() in seen:
            continue  # one storage under two parameters: counted once
        seen.add(storage.data_ptr())
        out[name] = storage.nbytes() // max(t.element_size(), 1)
    return out


COMMANDS = {"run_model": run_model}
