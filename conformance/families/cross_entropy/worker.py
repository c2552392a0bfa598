"""The vocab-parallel cross-entropy family, worker side: each rank's loss from its logit shard."""

from __future__ import annotations

import torch
import torch.distributed as dist
from tpconform.families.layer_steps import copy_of, matching_upstream_grad
from tpconform.transport.worker_tools import as_tensor


def run_cross_entropy(message: dict, impl) -> dict:
    """Forward this rank's logit shard and the targets, backward the upstream grad (one per token)."""
    d = message["data"]
    loss_fn = impl.vocab_parallel_cross_entropy(dist.group.WORLD)
    if loss_fn is None:
        return {"not_provided": True}
    logits, target, g = d["logits"].clone(), d["target"].clone(), d["grad_out"].clone()
    logits_sent, g_sent = logits.clone(), g.clone()
    logits.requires_grad_(torch.is_grad_enabled())  # off: declared forward-only (transport/worker.py)
    loss = as_tensor(loss_fn(logits, target), "the loss")
    result: dict = {"output": loss.detach().clone()}
    g = matching_upstream_grad(result, loss, g)
    if loss.requires_grad:
        loss.backward(g)
    result["input_grad"] = copy_of(logits.grad, "the logit grad")
    result["input_modified"] = not torch.equal(logits.detach(), logits_sent)
    result["grad_modified"] = not torch.equal(g, g_sent) if g.shape == g_sent.shape else False
    return result


COMMANDS = {"run_cross_entropy": run_cross_entropy}
