"""The merged column family, worker side: the weight cut into blocks, each sharded on its own."""

from __future__ import annotations

import torch.distributed as dist
from tpconform.families.layer_steps import build_on_every_rank, forward_and_backward
from tpconform.transport.worker_tools import noncontiguous


def run_merged(message: dict, impl) -> dict:
    """A merged column layer: the weight is cut into ``case["blocks"]`` row blocks; the upstream grad
    this rank is sent is its slice of every block (a block of ``n`` rows over ``p`` ranks: ``n/p`` each)."""
    case, d = message["case"], message["data"]
    group = dist.group.WORLD
    blocks = list(case["blocks"])
    weights = [w.clone() for w in d["weight"].split(blocks)]
    biases = None if d["bias"] is None else [b.clone() for b in d["bias"].split(blocks)]
    layer, shards, _, result = build_on_every_rank(impl, lambda: impl.merged_column(weights, biases, group=group),
                                                    "merged column", group)
    if layer is None:
        return result
    result["weight_shard"], result["bias_shard"] = shards
    x = noncontiguous(d["x"].clone()) if case["noncontiguous"] else d["x"].clone()
    g = d["grad_out"].clone()
    forward_and_backward(impl, layer, x, g, result, group)
    return result


COMMANDS = {"run_merged": run_merged}
