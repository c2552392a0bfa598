"""Bug: the model plan shards the embedding (vocab rows) and the lm_head (vocab rows) with
``parallelize_module`` and stops there: each module got a new DTensor parameter, so the tied weight is two
parameters (the lm_head's a copy), each with half the grad (transformers #47253's class).

Exposed by: tied embeddings at world size >= 2."""

from tpconform.families.model.plan import parallelize_model
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-model-lm-head-untied"

    def parallelize_model(self, model, group):
        return parallelize_model(model, group, tie=False)
