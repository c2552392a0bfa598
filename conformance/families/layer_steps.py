"""Building and running layers on the ranks, the same way for every family (worker side)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.distributed as dist
from tpconform.transport.worker_tools import as_tensor, error_text, exchange


def copy_of(t, what: str):
    """A detached copy of the tensor ``t`` (``None`` stays ``None``); ``what`` names it if it is not a tensor."""
    return None if t is None else as_tensor(t, what).detach().clone()


def built(impl, build, what: str):
    """Build one layer; ``(layer, shards, None)``, ``(None, None, error text)``, or
    ``(None, None, None)`` when the builder returned ``None`` (an optional layer not offered)."""
    try:
        layer = build()
        if layer is None:
            return None, None, None
        w, b = impl.shards(layer)
        w = as_tensor(w, f"the {what} weight shard").detach().clone()
        return layer, (w, copy_of(b, f"the {what} bias shard")), None
    except Exception as exc:
        return None, None, error_text(exc)


def build_on_every_rank(impl, build, what: str, group, share_shape: bool = False):
    """Build this rank's layer, then tell the other ranks whether it was built (every rank joins).

    Returns ``(layer, shards, table, result)``, ``result`` being this rank's reply so far. When
    ``layer`` is ``None``, ``result`` is the whole reply: ``{"not_provided": True}`` (the builder
    returned ``None``, the same on every rank: nothing else runs), or the ranks whose construction
    raised. ``table`` has each rank's row: ``[1 if built else 0]``, then with ``share_shape`` its
    weight shard's shape (``[-1, -1]`` when that is not a matrix)."""
    layer, shards, error = built(impl, build, what)
    if error is None and layer is None:
        return None, None, None, {"not_provided": True}
    result: dict = {"rank": dist.get_rank(group)}
    shape = []
    if share_shape:
        shape = list(shards[0].shape) if error is None and shards[0].dim() == 2 else [-1, -1]
    table = built_everywhere(error, result, group, shape)
    if table is None:
        return None, None, None, result
    return layer, shards, table, result


def built_everywhere(error: Optional[str], result: dict, group, row: Sequence[int] = ()) -> Optional[list[list[int]]]:
    """Tell the other ranks whether this rank's build succeeded (every rank joins, even one whose build
    raised, so no rank waits in a collective another never reaches). Returns every rank's row
    (``[1 if built else 0, *row]``), or ``None`` when some rank's build failed: ``result`` then names the
    ranks that failed, and this rank's error if it is one of them."""
    table = exchange([0 if error else 1, *row], group)
    if all(r[0] == 1 for r in table):
        return table
    if error is not None:  # a rank that built its layer has no error to report
        result["construct_error"] = error
    result["construct_failed_ranks"] = [r for r, r_row in enumerate(table) if r_row[0] == 0]
    return None


def matching_upstream_grad(result: dict, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g``, or zeros shaped like the output ``y`` when ``g``'s shape differs (noted in ``result``):
    every rank runs its backward, so that the ranks' backward collectives stay matched."""
    if y.shape != g.shape:
        result["upstream_grad_replaced"] = f"output shape {list(y.shape)} != upstream grad {list(g.shape)}"
        g = torch.zeros_like(y.detach())
    return g


def forward_and_backward(impl, layer, x: torch.Tensor, g: torch.Tensor, result: dict, group) -> None:
    """Run ``layer`` on ``x`` (made a leaf that requires grad) and back-propagate the upstream grad
    ``g``; apply the grad finalisation the impl declares (``impl.finalize_grads``, on every rank);
    record the output, the input grad and the layer's shard grads in ``result``."""
    x.requires_grad_(torch.is_grad_enabled())  # off: declared forward-only (transport/worker.py)
    y = as_tensor(impl.forward(layer, x), "the layer's output")
    result["output"] = y.detach().clone()
    g = matching_upstream_grad(result, y, g)
    if y.requires_grad:
        y.backward(g)
    finalize = getattr(impl, "finalize_grads", None)  # duck-typed impls may lack the optional method
    finalized = finalize(layer, group) if finalize else None
    if finalized:
        result["grads_finalized_by"] = str(finalized)
    result["input_grad"] = copy_of(x.grad, "the input grad")
    w, b = impl.shard_grads(layer)
    result["weight_grad"], result["bias_grad"] = copy_of(w, "the weight grad"), copy_of(b, "the bias grad")
