"""Bug: the model plan leaves the (untied) lm_head out: every rank holds the whole ``vocab x hidden`` matrix
and computes every logit itself. The values are right; each rank holds p times its share of the largest
matrix of a real model (transformers #47253's class: an lm_head tp_plan entry silently lost).

Exposed by: an untied model at world size >= 2."""

import torch.distributed as dist
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import PrepareModuleInput
from tpconform.families.model.plan import parallelize_model, plan
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-model-lm-head-replicated"

    def parallelize_model(self, model, group):
        if model.config.tied or dist.get_world_size(group) == 1:
            return parallelize_model(model, group)
        styles = {k: v for k, v in plan(model.config).items() if k != "output"}
        if model.config.sequence_parallel:  # the plain lm_head still needs the whole sequence
            styles["output"] = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),),
                                                  use_local_output=True)
        return parallelize_model(model, group, styles)
