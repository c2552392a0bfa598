"""The replicated-norm family, worker side: each rank normalises its rows of the sequence."""

from __future__ import annotations

import torch.distributed as dist
from tpconform.families.layer_steps import build_on_every_rank, forward_and_backward
from tpconform.families.replicated_norm.case import OFFERED_BY, ReplicatedNormCase


def run_replicated_norm(message: dict, impl) -> dict:
    """Build the norm from the whole weight, forward this rank's rows, backward their upstream grad, apply
    the grad finalisation the impl declares; the reply holds the output, the input grad and the weight grad."""
    case, d = ReplicatedNormCase.from_dict(message["case"]), message["data"]
    build = getattr(impl, OFFERED_BY, None)  # an optional method no protocol declares: duck-typed
    if build is None:
        return {"not_provided": True}
    group = dist.group.WORLD
    layer, _, _, result = build_on_every_rank(impl, lambda: build(d["weight"].clone(), eps=case.eps, group=group),
                                              "norm", group)
    if layer is None:
        return result
    forward_and_backward(impl, layer, d["x"].clone(), d["grad_out"].clone(), result, group)
    return result


COMMANDS = {"run_replicated_norm": run_replicated_norm}
