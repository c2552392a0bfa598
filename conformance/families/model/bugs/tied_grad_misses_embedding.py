"""Bug: the model plan's embedding looks up a detached view of the tied weight (a "frozen lookup"): the
lm_head and the embedding still share one parameter, but its grad is the lm_head's use alone.

Exposed by: tied embeddings, any world size."""

import types

import torch.nn.functional as F
from tpconform.families.model.plan import parallelize_model
from tpconform.impls.reference import ReferenceImpl


def _detached_lookup(self, ids):
    return F.embedding(ids, self.weight.detach())


class Impl(ReferenceImpl):
    name = "bug-model-tied-grad-misses-embedding"

    def parallelize_model(self, model, group):
        model = parallelize_model(model, group)
        if model.config.tied:
            model.tok_embeddings.forward = types.MethodType(_detached_lookup, model.tok_embeddings)
        return model
