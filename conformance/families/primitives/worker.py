"""The primitives family, worker side: one collective autograd function on its own."""

from __future__ import annotations

import torch
import torch.distributed as dist
from tpconform.families.layer_steps import copy_of, matching_upstream_grad
from tpconform.transport.worker_tools import as_tensor, error_text, exchange
from tpconform.transport.worker_tools import laid_out as worker_laid_out


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
    (for ``scatter_to``: its slice of the full grad, cut by the verdict along the output widths of a
    forward-only round, ``"stages": []``, which ends after the forward).

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
    x.requires_grad_(torch.is_grad_enabled())  # off: declared forward-only (transport/worker.py)
    leaf = x
    result: dict = {}
    try:
        y = prims[case["primitive"]](x)
        refused = 0
    except RuntimeError as exc:  # an in-place write into its input, refused by autograd on a leaf
        if LEAF_IN_PLACE not in str(exc):
            raise
        refused, result["input_modified_note"] = 1, error_text(exc).splitlines()[0]
    if any(row[0] for row in exchange([refused], group)):  # every rank retries together (collectives match)
        if not refused:
            raise RuntimeError("another rank's primitive wrote into its leaf input in place; this rank's did not")
        leaf = d["x"].clone().requires_grad_(True)
        # the same values and layout, as a non-leaf activation (``mul(1)``: laid out, an empty or already
        # contiguous tensor could otherwise come back as a view of the leaf itself)
        x = laid_out(leaf.mul(1), case["layout"])
        y = prims[case["primitive"]](x)
    y = as_tensor(y, f"{case['primitive']}'s output")
    result["output"] = y.detach().clone()
    if message.get("stages") == []:  # the forward-only round: the verdict reads each rank's split here
        return result
    g = d["g"]  # scatter_to: this rank's slice alone, cut by the verdict
    g = laid_out(matching_upstream_grad(result, y, g), case["layout"])
    g_sent = g.detach().clone()
    if y.requires_grad:
        y.backward(g)
    result["input_grad"] = copy_of(leaf.grad, "the input grad")
    result["input_modified"] = bool(refused) or not torch.equal(x.detach(), x_sent)
    result["grad_modified"] = not torch.equal(g, g_sent)
    return result


COMMANDS = {"run_primitive": run_primitive}
