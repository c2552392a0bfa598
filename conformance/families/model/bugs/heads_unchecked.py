"""Bug: the model plan shards every block without checking its head counts and FFN width against the
world size (torchtitan #2574's class): DTensor splits what does not divide unevenly, the local head counts
round down (to none, for fewer kv heads than ranks), and the forward fails mid-attention or computes garbage, never refused up front.

Exposed by: heads, kv heads or FFN width not divisible by the world size."""

import torch.distributed as dist
from torch.distributed.tensor.parallel import parallelize_module
from tpconform.families.block.plan import mesh_of
from tpconform.families.model.plan import localise_sharded_heads, plan, retie
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-model-heads-unchecked"

    def parallelize_model(self, model, group):
        p = dist.get_world_size(group)
        if p == 1:
            return model
        parallelize_module(model, mesh_of(group), plan(model.config))
        localise_sharded_heads(model, p)  # n // p, whatever divides
        if model.config.tied:
            retie(model)
        return model
