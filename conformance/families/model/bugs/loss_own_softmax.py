"""Bug: the model plan replaces the loss with a hand-written vocab-parallel cross entropy that all-reduces
the target's logit but not the log-sum-exp: each rank normalises over its own vocab shard.

Exposed by: loss parallel at world size >= 2."""

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
from tpconform.families.model.plan import parallelize_model
from tpconform.impls.reference import ReferenceImpl


def own_softmax_loss(logits, targets):
    z = logits.to_local().flatten(0, 1)
    _, offset = compute_local_shape_and_global_offset(logits.shape, logits.device_mesh, logits.placements)
    t = targets.flatten() - offset[-1]
    held = (t >= 0) & (t < z.shape[-1])
    picked = torch.where(held, z.gather(-1, t.clamp(0, max(z.shape[-1] - 1, 0))[:, None])[:, 0], 0.0)
    picked = dist_fn.all_reduce(picked, group=dist.group.WORLD)
    return (torch.logsumexp(z, -1) - picked).mean()  # the log-sum-exp of this rank's shard only


class Impl(ReferenceImpl):
    name = "bug-model-loss-own-softmax"

    def parallelize_model(self, model, group):
        model = parallelize_model(model, group)
        if model.config.loss_parallel and dist.get_world_size(group) > 1:
            model.loss_fn = own_softmax_loss
        return model

