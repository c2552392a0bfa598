"""The sequence-parallel family, worker side: each rank fed its sequence shard or feature slice."""

from __future__ import annotations

import torch.distributed as dist
from tpconform.families.layer_steps import build_on_every_rank, forward_and_backward
from tpconform.families.linear.case import LayerCase
from tpconform.transport.worker_tools import laid_out as worker_laid_out


def run_sequence_parallel(message: dict, impl) -> dict:
    """One sequence-parallel layer example; the sequence is dim 0 of ``x`` and divides by the world size."""
    case, d = LayerCase.from_dict(message["case"]), message["data"]
    group = dist.group.WORLD
    build = impl.column_sequence_parallel if case.kind == "column" else impl.row_sequence_parallel
    bias = None if d["bias"] is None else d["bias"].clone()
    layer, shards, _, result = build_on_every_rank(impl, lambda: build(d["weight"].clone(), bias, group=group),
                                                   case.kind, group)
    if layer is None:
        return result
    result["weight_shard"], result["bias_shard"] = shards
    if message.get("stages") == []:  # the build-only round: the verdict reads each rank's feature slice here
        return result
    # this rank's share alone, cut by the verdict: column, its sequence shard of the input and its feature
    # slice of the upstream grad (the whole sequence); row, its feature slice of the input (the whole
    # sequence) and its sequence shard of the upstream grad
    x, g = d["x"].clone(), d["grad_out"].clone()
    forward_and_backward(impl, layer, worker_laid_out(x, case.layout), g, result, group)
    return result


COMMANDS = {"run_sequence_parallel": run_sequence_parallel}
