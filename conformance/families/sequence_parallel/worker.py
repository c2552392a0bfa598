"""The sequence-parallel family, worker side: each rank fed its sequence shard or feature slice."""

from __future__ import annotations

import torch
import torch.distributed as dist
from tpconform.families.layer_steps import build_on_every_rank, forward_and_backward
from tpconform.families.linear.case import LayerCase
from tpconform.transport.worker_tools import laid_out as worker_laid_out
from tpconform.transport.worker_tools import offsets


def run_sequence_parallel(message: dict, impl) -> dict:
    """One sequence-parallel layer example; the sequence is dim 0 of ``x`` and divides by the world size."""
    case, d = LayerCase.from_dict(message["case"]), message["data"]
    group = dist.group.WORLD
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    build = impl.column_sequence_parallel if case.kind == "column" else impl.row_sequence_parallel
    bias = None if d["bias"] is None else d["bias"].clone()
    layer, shards, table, result = build_on_every_rank(impl, lambda: build(d["weight"].clone(), bias, group=group),
                                                        case.kind, group, share_shape=True)
    if layer is None:
        return result
    result["weight_shard"], result["bias_shard"] = shards
    split = [row_[1] if case.kind == "column" else row_[2] for row_ in table]
    full = case.out_features if case.kind == "column" else case.in_features
    if min(split) < 0 or sum(split) != full:
        split = [t.shape[0] for t in torch.tensor_split(torch.empty(full), world)]
    features = (offsets(split)[rank], split[rank])
    # the sequence shard (column: of the input; row: of the upstream grad) is sent as this rank's alone
    if case.kind == "column":  # this rank's sequence shard in, its feature slice of the full sequence out
        x, g = d["x"].clone(), d["grad_out"].narrow(-1, *features).clone()
    else:  # its feature slice of the full sequence in, its sequence shard out
        x, g = d["x"].narrow(-1, *features).clone(), d["grad_out"].clone()
    forward_and_backward(impl, layer, worker_laid_out(x, case.layout), g, result, group)
    return result


COMMANDS = {"run_sequence_parallel": run_sequence_parallel}
