"""The MLP family, worker side: column → activation → row, counting the collectives of each pass."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tpconform.families.layer_steps import built, built_everywhere, copy_of, matching_upstream_grad
from tpconform.transport.worker_tools import CollectiveVolume, as_tensor, noncontiguous

# the activation between the two layers of the MLP; the suite applies it, not the candidate
ACTIVATIONS = {"relu": torch.relu, "gelu": F.gelu}


def run_mlp(message: dict, impl) -> dict:
    """Column (gather_output=False) → activation → row (input_is_parallel=True) on the whole world."""
    case, d = message["case"], message["data"]
    group = dist.group.WORLD
    result: dict = {"rank": dist.get_rank()}
    clone = lambda t: None if t is None else t.clone()  # noqa: E731
    column, col_shards, col_error = built(
        impl, lambda: impl.column(clone(d["w1"]), clone(d["b1"]), gather_output=False, group=group), "column")
    row, row_shards, row_error = built(
        impl, lambda: impl.row(clone(d["w2"]), clone(d["b2"]), input_is_parallel=True, group=group), "row")
    if built_everywhere(col_error or row_error, result, group) is None:
        return result
    (result["w1_shard"], result["b1_shard"]), (result["w2_shard"], result["b2_shard"]) = col_shards, row_shards

    x = noncontiguous(d["x"].clone()) if case["noncontiguous"] else d["x"].clone()
    x.requires_grad_(torch.is_grad_enabled())  # off: declared forward-only (transport/worker.py)
    with CollectiveVolume() as forward:
        y = as_tensor(impl.forward(column, x), "the column layer's output")
        y = as_tensor(impl.forward(row, ACTIVATIONS[case["activation"]](y)), "the row layer's output")
    g = matching_upstream_grad(result, y, d["grad_out"].clone())
    with CollectiveVolume() as backward:
        if y.requires_grad:
            y.backward(g)
    result["forward_collectives"], result["backward_collectives"] = forward.calls, backward.calls
    result["output"] = y.detach().clone()
    result["input_grad"] = copy_of(x.grad, "the input grad")
    for prefix, layer in (("1", column), ("2", row)):
        w, b = impl.shard_grads(layer)
        result[f"w{prefix}_grad"], result[f"b{prefix}_grad"] = copy_of(w, "a weight grad"), copy_of(b, "a bias grad")
    return result


COMMANDS = {"run_mlp": run_mlp}
