"""Worker-side commands beyond one layer on the whole world (run in worker processes only).

- ``run_tp_group``: the world split into TP groups of ``case.tp_size`` consecutive ranks; this rank
  builds and runs the layer on *its* TP group only (``conformance.subgroups`` is the verdict side).
- ``run_mlp``: column (``gather_output=False``) → activation → row (``input_is_parallel=True``),
  forward and backward, counting the collectives of each pass (``conformance.compositions``).
- ``run_primitive``: one of the impl's four collective autograd functions on its own, forward and
  backward, on an input (and upstream grad) in the case's memory layout (``conformance.primitives``).
- ``run_sequence_parallel``: a sequence-parallel column or row layer, each rank fed its sequence
  shard (column) or its feature slice (row) (``conformance.sequence_parallel``).
- ``run_embedding``: a vocab-parallel embedding, every rank fed all the ids (``conformance.embedding``).
- ``run_merged``: a merged column layer (QKV / gate-up blocks), output sharded (``conformance.merged``).

Each command takes the decoded message and returns plain data for ``conformance.wire``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
import torch.nn.functional as F

from conformance.cases import LayerCase
from conformance.worker import (
    _as_tensor,
    _CollectiveVolume,
    _error_text,
    _exchange,
    _noncontiguous,
    _offsets,
    run_example,
)
from conformance.worker import laid_out as worker_laid_out

_tp_groups: dict[int, list] = {}


def tp_group(tp_size: int):
    """This rank's TP group when the world is split into groups of ``tp_size`` consecutive ranks.

    ``dist.new_group`` is collective over the whole world: every rank creates every group, in the
    same order, the first time any command asks for this ``tp_size`` (all ranks get every command)."""
    if tp_size not in _tp_groups:
        world = dist.get_world_size()
        if tp_size < 1 or world % tp_size:
            raise ValueError(f"tp_size={tp_size} does not divide world_size={world}")
        _tp_groups[tp_size] = [dist.new_group(list(range(start, start + tp_size)))
                               for start in range(0, world, tp_size)]
    return _tp_groups[tp_size][dist.get_rank() // tp_size]


def run_tp_group(message: dict, impl) -> dict:
    """One layer example on this rank's TP group (its own tensors; the impl is given that group)."""
    case = LayerCase.from_dict(message["case"])
    group_case = dataclasses.replace(case, world_size=case.tp_size, tp_size=0)
    data = message["data"] if not message.get("sliced") else {**message["data"], "sliced": message["sliced"]}
    return run_example(impl, group_case, data, tp_group(case.tp_size), message.get("stages"))


# the activation between the two layers of the MLP; the suite applies it, not the candidate
ACTIVATIONS = {"relu": torch.relu, "gelu": F.gelu}


def _copy(t, what: str):
    """A detached copy of the tensor ``t`` (``None`` stays ``None``); ``what`` names it if it is not a tensor."""
    return None if t is None else _as_tensor(t, what).detach().clone()


def _built(impl, build, what: str):
    """Build one layer; ``(layer, shards, None)``, ``(None, None, error text)``, or
    ``(None, None, None)`` when the builder returned ``None`` (an optional layer not offered)."""
    try:
        layer = build()
        if layer is None:
            return None, None, None
        w, b = impl.shards(layer)
        w = _as_tensor(w, f"the {what} weight shard").detach().clone()
        return layer, (w, _copy(b, f"the {what} bias shard")), None
    except Exception as exc:
        return None, None, _error_text(exc)


def _build_on_every_rank(impl, build, what: str, group, share_shape: bool = False):
    """Build this rank's layer, then tell the other ranks whether it was built (every rank joins).

    Returns ``(layer, shards, table, result)``, ``result`` being this rank's reply so far. When
    ``layer`` is ``None``, ``result`` is the whole reply: ``{"not_provided": True}`` (the builder
    returned ``None``, the same on every rank: nothing else runs), or the ranks whose construction
    raised. ``table`` has each rank's row: ``[1 if built else 0]``, then with ``share_shape`` its
    weight shard's shape (``[-1, -1]`` when that is not a matrix)."""
    layer, shards, error = _built(impl, build, what)
    if error is None and layer is None:
        return None, None, None, {"not_provided": True}
    result: dict = {"rank": dist.get_rank(group)}
    shape = []
    if share_shape:
        shape = list(shards[0].shape) if error is None and shards[0].dim() == 2 else [-1, -1]
    table = _exchange([0 if error else 1, *shape], group)
    if any(row[0] == 0 for row in table):
        if error is not None:  # a rank that built its layer has no error to report
            result["construct_error"] = error
        result["construct_failed_ranks"] = [r for r, row in enumerate(table) if row[0] == 0]
        return None, None, None, result
    return layer, shards, table, result


def _matching_upstream_grad(result: dict, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g``, or zeros shaped like the output ``y`` when ``g``'s shape differs (noted in ``result``):
    every rank runs its backward, so that the ranks' backward collectives stay matched."""
    if y.shape != g.shape:
        result["upstream_grad_replaced"] = f"output shape {list(y.shape)} != upstream grad {list(g.shape)}"
        g = torch.zeros_like(y.detach())
    return g


def _forward_and_backward(impl, layer, x: torch.Tensor, g: torch.Tensor, result: dict, group) -> None:
    """Run ``layer`` on ``x`` (made a leaf that requires grad) and back-propagate the upstream grad
    ``g``; apply the grad finalisation the impl declares (``impl.finalize_grads``, on every rank);
    record the output, the input grad and the layer's shard grads in ``result``."""
    x.requires_grad_(True)
    y = _as_tensor(impl.forward(layer, x), "the layer's output")
    result["output"] = y.detach().clone()
    g = _matching_upstream_grad(result, y, g)
    if y.requires_grad:
        y.backward(g)
    finalize = getattr(impl, "finalize_grads", None)  # duck-typed impls may lack the optional method
    finalized = finalize(layer, group) if finalize else None
    if finalized:
        result["grads_finalized_by"] = str(finalized)
    result["input_grad"] = _copy(x.grad, "the input grad")
    w, b = impl.shard_grads(layer)
    result["weight_grad"], result["bias_grad"] = _copy(w, "the weight grad"), _copy(b, "the bias grad")


def run_mlp(message: dict, impl) -> dict:
    """Column (gather_output=False) → activation → row (input_is_parallel=True) on the whole world."""
    case, d = message["case"], message["data"]
    group = dist.group.WORLD
    result: dict = {"rank": dist.get_rank()}
    clone = lambda t: None if t is None else t.clone()  # noqa: E731
    column, col_shards, col_error = _built(
        impl, lambda: impl.column(clone(d["w1"]), clone(d["b1"]), gather_output=False, group=group), "column")
    row, row_shards, row_error = _built(
        impl, lambda: impl.row(clone(d["w2"]), clone(d["b2"]), input_is_parallel=True, group=group), "row")
    if col_error or row_error:  # every rank joins the status exchange, even when its build raised
        result["construct_error"] = col_error or row_error
    table = _exchange([0 if (col_error or row_error) else 1], group)
    if any(row_[0] == 0 for row_ in table):
        result["construct_failed_ranks"] = [r for r, row_ in enumerate(table) if row_[0] == 0]
        return result
    (result["w1_shard"], result["b1_shard"]), (result["w2_shard"], result["b2_shard"]) = col_shards, row_shards

    x = _noncontiguous(d["x"].clone()) if case["noncontiguous"] else d["x"].clone()
    x.requires_grad_(True)
    with _CollectiveVolume() as forward:
        y = _as_tensor(impl.forward(column, x), "the column layer's output")
        y = _as_tensor(impl.forward(row, ACTIVATIONS[case["activation"]](y)), "the row layer's output")
    g = _matching_upstream_grad(result, y, d["grad_out"].clone())
    with _CollectiveVolume() as backward:
        if y.requires_grad:
            y.backward(g)
    result["forward_collectives"], result["backward_collectives"] = forward.calls, backward.calls
    result["output"] = y.detach().clone()
    result["input_grad"] = _copy(x.grad, "the input grad")
    for prefix, layer in (("1", column), ("2", row)):
        w, b = impl.shard_grads(layer)
        result[f"w{prefix}_grad"], result[f"b{prefix}_grad"] = _copy(w, "a weight grad"), _copy(b, "a bias grad")
    return result


def laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A primitive's input or grad in a given memory layout: ``contiguous``; ``strided`` (stride 2 in
    the last dim); ``transposed`` (the last two dims stored swapped; strided for fewer than 2 dims)."""
    if layout == "transposed" and t.dim() < 2:
        layout = "strided"
    return worker_laid_out(t, layout)


# autograd's refusal of an in-place write into a leaf that requires grad (``ctx.mark_dirty`` on it, or an
# in-place op with grad mode on)
LEAF_IN_PLACE = "leaf Variable that requires grad"


def run_primitive(message: dict, impl) -> dict:
    """One collective autograd function on its own: forward ``x``, backward this rank's upstream grad
    (for ``scatter_to``: its slice of the full grad, placed by the output widths of all ranks).

    A primitive that writes into its input in place raises on the leaf input (autograd refuses it):
    that is recorded as what it is (``input_modified_note``), and the example is run again, on every
    rank, with the same values as a non-leaf (an activation, as a caller inside a model gives it), so
    that its forward and backward are still judged."""
    case, d = message["case"], message["data"]
    group = dist.group.WORLD
    prims = impl.primitives(group)
    if prims is None:
        return {"not_provided": True}
    x = laid_out(d["x"], case["layout"])
    x_sent = x.detach().clone()
    x.requires_grad_(True)
    leaf = x
    result: dict = {}
    try:
        y = prims[case["primitive"]](x)
        refused = 0
    except RuntimeError as exc:  # an in-place write into its input, refused by autograd on a leaf
        if LEAF_IN_PLACE not in str(exc):
            raise
        refused, result["input_modified_note"] = 1, _error_text(exc).splitlines()[0]
    if any(row[0] for row in _exchange([refused], group)):  # every rank retries together (collectives match)
        if not refused:
            raise RuntimeError("another rank's primitive wrote into its leaf input in place; this rank's did not")
        leaf = d["x"].clone().requires_grad_(True)  # the same values and layout, as a non-leaf activation
        x = laid_out(leaf, case["layout"])
        y = prims[case["primitive"]](x)
    y = _as_tensor(y, f"{case['primitive']}'s output")
    result["output"] = y.detach().clone()
    g = d["g"]
    if case["primitive"] == "scatter_to":  # every rank joins, whatever its output
        widths = [w[0] for w in _exchange([y.shape[-1] if y.dim() else -1], group)]
        if min(widths) >= 0 and sum(widths) == g.shape[-1]:
            g = g.narrow(-1, _offsets(widths)[dist.get_rank(group)], widths[dist.get_rank(group)])
    g = laid_out(_matching_upstream_grad(result, y, g), case["layout"])
    g_sent = g.detach().clone()
    if y.requires_grad:
        y.backward(g)
    result["input_grad"] = _copy(leaf.grad, "the input grad")
    result["input_modified"] = bool(refused) or not torch.equal(x.detach(), x_sent)
    result["grad_modified"] = not torch.equal(g, g_sent)
    return result


def run_sequence_parallel(message: dict, impl) -> dict:
    """One sequence-parallel layer example; the sequence is dim 0 of ``x`` and divides by the world size."""
    case, d = LayerCase.from_dict(message["case"]), message["data"]
    group = dist.group.WORLD
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    build = impl.column_sequence_parallel if case.kind == "column" else impl.row_sequence_parallel
    bias = None if d["bias"] is None else d["bias"].clone()
    layer, shards, table, result = _build_on_every_rank(impl, lambda: build(d["weight"].clone(), bias, group=group),
                                                        case.kind, group, share_shape=True)
    if layer is None:
        return result
    result["weight_shard"], result["bias_shard"] = shards
    n = case.batch_shape[0] // world
    split = [row_[1] if case.kind == "column" else row_[2] for row_ in table]
    full = case.out_features if case.kind == "column" else case.in_features
    if min(split) < 0 or sum(split) != full:
        split = [t.shape[0] for t in torch.tensor_split(torch.empty(full), world)]
    features = (_offsets(split)[rank], split[rank])
    if case.kind == "column":  # this rank's sequence shard in, its feature slice of the full sequence out
        x, g = d["x"].narrow(0, rank * n, n).clone(), d["grad_out"].narrow(-1, *features).clone()
    else:  # its feature slice of the full sequence in, its sequence shard out
        x, g = d["x"].narrow(-1, *features).clone(), d["grad_out"].narrow(0, rank * n, n).clone()
    _forward_and_backward(impl, layer, worker_laid_out(x, case.layout), g, result, group)
    return result


def run_embedding(message: dict, impl) -> dict:
    """A vocab-parallel embedding: every rank looks up all the ids; backward a random upstream grad."""
    d = message["data"]
    group = dist.group.WORLD
    layer, shards, _, result = _build_on_every_rank(
        impl, lambda: impl.vocab_parallel_embedding(d["weight"].clone(), group=group), "embedding", group)
    if layer is None:
        return result
    result["weight_shard"] = shards[0]
    ids = d["ids"].clone()
    y = _as_tensor(impl.forward(layer, ids), "the embedding's output")
    result["output"] = y.detach().clone()
    g = _matching_upstream_grad(result, y, d["grad_out"].clone())
    if y.requires_grad:
        y.backward(g)
    w, _ = impl.shard_grads(layer)
    result["weight_grad"] = _copy(w, "the weight grad")
    result["ids_modified"] = not torch.equal(ids, d["ids"])
    return result


def run_merged(message: dict, impl) -> dict:
    """A merged column layer: the weight is cut into ``case["blocks"]`` row blocks; the upstream grad
    of this rank is its slice of every block (a block of ``n`` rows over ``p`` ranks: ``n/p`` each)."""
    case, d = message["case"], message["data"]
    group = dist.group.WORLD
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    blocks = list(case["blocks"])
    weights = [w.clone() for w in d["weight"].split(blocks)]
    biases = None if d["bias"] is None else [b.clone() for b in d["bias"].split(blocks)]
    layer, shards, _, result = _build_on_every_rank(impl, lambda: impl.merged_column(weights, biases, group=group),
                                                    "merged column", group)
    if layer is None:
        return result
    result["weight_shard"], result["bias_shard"] = shards
    x = _noncontiguous(d["x"].clone()) if case["noncontiguous"] else d["x"].clone()
    g = torch.cat([gb.narrow(-1, rank * (n // world), n // world) for gb, n in zip(d["grad_out"].split(blocks, -1),
                                                                                  blocks)], dim=-1)
    _forward_and_backward(impl, layer, x, g, result, group)
    return result


COMMANDS = {
    "run_tp_group": run_tp_group,
    "run_mlp": run_mlp,
    "run_primitive": run_primitive,
    "run_sequence_parallel": run_sequence_parallel,
    "run_embedding": run_embedding,
    "run_merged": run_merged,
}
