"""The block family, worker side: build the dense block in the case's dtype, hand it to the impl's
``parallelize_block`` (variant "plan") or ``build_tp_block`` (variant "builder"), run it forward and
backward; when asked (``data["step"]``), take one optimizer step (``case.optimizer``) on the module's
parameters and run forward and backward again (``after_step``). This is the one place that knows which way
the impl was handed in: both reply alike, every parameter under its dense name.

Each parameter comes back as plain tensors: its local value and grad, and where the local part sits in
the dense parameter (``[[start, stop], …]`` per dim). A plan's: read from a DTensor's placements, or for a
plain tensor: the whole parameter when it has the dense shape, else the ``tp_dense_slice`` the plan set on
it (``((start, stop), …)``); ``None`` when neither tells. A builder's: its name map's (``name_map.py``),
with ``where_note`` saying why when the map cannot be read."""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
from tpconform.families.block.case import STEP, BlockCase
from tpconform.families.block.dense import build_block, take_step
from tpconform.families.block.name_map import Part, their_parameters
from tpconform.families.layer_steps import built_everywhere, copy_of, matching_upstream_grad
from tpconform.transport.worker_tools import CollectiveVolume, as_tensor, error_text


def _local(t):
    return t.to_local() if isinstance(t, DTensor) else t


def placement(p, dense_shape: torch.Size) -> Optional[list[list[int]]]:
    """Where ``p``'s local part sits in the dense parameter, as ``[start, stop]`` per dim."""
    if isinstance(p, DTensor):
        shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
        return [[int(o), int(o) + int(n)] for o, n in zip(offset, shape)]
    marked = getattr(p, "tp_dense_slice", None)
    if marked is not None:
        return [[int(a), int(b)] for a, b in marked]
    if tuple(p.shape) == tuple(dense_shape):
        return [[0, int(n)] for n in dense_shape]
    return None


def _grad(p):
    """``p``'s grad as its own placement holds it: a DTensor grad may be left ``Partial`` (a replicated norm
    weight under sequence parallelism: each rank's sum over its own tokens) until something reads it; the
    optimizer's update, or this, redistributes it to the parameter's placement (an all-reduce)."""
    g = p.grad
    if isinstance(g, DTensor) and isinstance(p, DTensor) and tuple(g.placements) != tuple(p.placements):
        g = g.redistribute(p.device_mesh, p.placements)
    return _local(g)


# A parallelised block's parameters by dense name: (the parameter or None, where its part sits or why not
# known, the ranges of their local tensor that hold it when it is fused with others: ``name_map.Part``, or None)
Params = dict[str, tuple]


def _plan_parameters(model, dense_shapes: dict) -> Params:
    return {name: (p, placement(p, dense_shapes.get(name, torch.Size(()))) if name in dense_shapes else None, None)
            for name, p in model.named_parameters()}


def offered(impl, handed_in: str):
    """The impl's way to parallelise the block for this variant, as ``f(dense, group) -> (module, parameters
    by dense name)`` (``None`` from it: not offered); ``None``: the impl has no such method (optional methods
    no protocol declares: duck-typed)."""
    if handed_in == "plan":
        plan = getattr(impl, "parallelize_block", None)
        if plan is None:
            return None

        def parallelised(dense, group):
            model = plan(dense, group)
            return None if model is None else (model, _plan_parameters(model, _shapes(dense)))
        return parallelised
    build = getattr(impl, "build_tp_block", None)
    if build is None:
        return None

    def built(dense, group):
        shapes = _shapes(dense)  # read before the builder runs: it may leave the dense block changed
        out = build(dense, group)
        if out is None:
            return None
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"build_tp_block must return (module, name map), got {type(out).__name__}")
        module, name_map = out
        return module, their_parameters(module, name_map, shapes, dist.get_rank(group), dist.get_world_size(group))
    return built


def _shapes(dense) -> dict:
    return {name: p.shape for name, p in dense.named_parameters()}


def _cut(t, part: Optional[Part]):
    """The dense parameter's part of ``t``: all of it, or a fused parameter's ranges that hold it."""
    return t if part is None or not isinstance(t, torch.Tensor) else part.of(t)


def _parameters(params: Params) -> dict:
    out = {}
    for name, (p, where, part) in params.items():
        entry = {"value": None if p is None else copy_of(_cut(_local(p), part), f"parameter {name}"),
                 "grad": None if p is None else copy_of(_cut(_grad(p), part), f"the grad of {name}"),
                 "where": where if not isinstance(where, str) else None}
        if isinstance(where, str):
            entry["where_note"] = where
        out[name] = entry
    return out


def run_block(message: dict, impl) -> dict:
    """Parallelise the dense block (plan or builder, ``case.handed_in``), forward ``x``, backward ``grad_out``."""
    d, case = message["data"], BlockCase.from_dict(message["case"])
    group = dist.group.WORLD
    result: dict = {"rank": dist.get_rank(group)}
    offer = offered(impl, case.handed_in)
    dense = build_block(case, case.torch_dtype, {k: v.clone() for k, v in d["weights"].items()})
    built, error = None, None
    try:
        built = offer(dense, group) if offer is not None else None
        if built is None:
            return {"not_provided": True}
    except Exception as exc:
        error = error_text(exc)
    if built_everywhere(error, result, group) is None:
        return result

    model, params = built
    _one_pass(model, d, result, params)
    if d.get("step") and torch.is_grad_enabled():
        take_step(model.parameters(), case.optimizer, STEP[case.optimizer])
        result["after_step"] = _one_pass(model, d, {}, params)
    return result


def _one_pass(model, d: dict, result: dict, params: Params) -> dict:
    """Forward the rank's ``x`` (the whole input, or its sequence shard), backward its ``grad_out``; the
    output, the input grad, every parameter (value, grad, where) and the collectives, into ``result``."""
    x = d["x"].clone().requires_grad_(torch.is_grad_enabled())
    with CollectiveVolume() as forward:
        y = as_tensor(_local(model(x)), "the block's output")
    result["output"] = y.detach().clone()
    g = matching_upstream_grad(result, y, d["grad_out"].clone())
    with CollectiveVolume() as backward:
        if y.requires_grad:
            y.backward(g)
    result["forward_collectives"], result["backward_collectives"] = forward.calls, backward.calls
    result["input_grad"] = copy_of(x.grad, "the input grad")
    result["parameters"] = _parameters(params)
    return result


COMMANDS = {"run_block": run_block}
