"""The vocab-parallel embedding family, worker side: every rank looks up all the ids."""

from __future__ import annotations

import torch
import torch.distributed as dist
from tpconform.families.layer_steps import build_on_every_rank, copy_of, matching_upstream_grad
from tpconform.transport.worker_tools import as_tensor


def run_embedding(message: dict, impl) -> dict:
    """A vocab-parallel embedding: every rank looks up all the ids; backward a random upstream grad."""
    d = message["data"]
    group = dist.group.WORLD
    layer, shards, _, result = build_on_every_rank(
        impl, lambda: impl.vocab_parallel_embedding(d["weight"].clone(), group=group), "embedding", group)
    if layer is None:
        return result
    result["weight_shard"] = shards[0]
    ids = d["ids"].clone()
    y = as_tensor(impl.forward(layer, ids), "the embedding's output")
    result["output"] = y.detach().clone()
    g = matching_upstream_grad(result, y, d["grad_out"].clone())
    if y.requires_grad:
        y.backward(g)
    w, _ = impl.shard_grads(layer)
    result["weight_grad"] = copy_of(w, "the weight grad")
    result["ids_modified"] = not torch.equal(ids, d["ids"])
    return result


COMMANDS = {"run_embedding": run_embedding}
