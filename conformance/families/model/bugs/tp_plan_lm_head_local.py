"""Bug: the model's tp_plan makes the lm_head ``"colwise"`` — transformers' colwise returns the local vocab
shard as a plain tensor — without loss parallel, where ``"colwise_rep"`` (gathered logits) was meant: each
rank's logits are a slice it cannot place, and the loss over them indexes past the shard.

Exposed by: loss parallel off at world size >= 2."""

from tpconform.families.model.tp_plan import reference_tp_plan
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-model-tp-plan-lm-head-local"

    def model_tp_plan(self, model):
        plan = reference_tp_plan(model.config)
        return plan if model.config.loss_parallel else {**plan, "output": "colwise"}
