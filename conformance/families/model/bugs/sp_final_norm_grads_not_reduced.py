"""Bug: under sequence parallelism the model plan leaves the final norm a plain module on each rank's
sequence shard (no ``SequenceParallel`` style): the lm_head still gathers its input from the shards, so the
logits and the loss are right, but each rank's final-norm weight grad is the sum over its own tokens only,
never all-reduced over the tensor-parallel group (NVIDIA/Megatron-LM #1446's class, on the model's last norm).

Exposed by: a sequence-parallel model at world size >= 2."""

import torch.distributed as dist
from tpconform.families.model.plan import parallelize_model, plan
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-model-sp-final-norm-grads-not-reduced"

    def parallelize_model(self, model, group):
        if not model.config.sequence_parallel or dist.get_world_size(group) == 1:
            return parallelize_model(model, group)
        styles = {k: v for k, v in plan(model.config).items() if k != "norm"}
        return parallelize_model(model, group, styles)
