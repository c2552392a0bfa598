"""Bug: the model's lm_head all-gathers its vocab-sharded weight (``full_tensor()``) every forward, computes
every logit from the whole matrix and keeps its vocab shard of them for the loss. The values and grads are
right; each forward moves the whole ``vocab x hidden`` weight where the plan implies no collective at all
(loss parallel: the logits stay vocab-sharded).

Exposed by: loss parallel at world size >= 2."""

import types

import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor, Replicate
from tpconform.families.model.plan import parallelize_model
from tpconform.impls.reference import ReferenceImpl


def gathered_weight_forward(self, x):
    logits = F.linear(x.to_local(), self.weight.full_tensor())  # the whole weight, gathered
    return DTensor.from_local(logits, x.device_mesh, [Replicate()], run_check=False)


class Impl(ReferenceImpl):
    name = "bug-model-lm-head-gathers-weight"

    def parallelize_model(self, model, group):
        model = parallelize_model(model, group)
        if model.config.loss_parallel and dist.get_world_size(group) > 1:
            model.output.forward = types.MethodType(gathered_weight_forward, model.output)
        return model
