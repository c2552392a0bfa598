"""Bug: the model builder gives the lm_head its own copy of the embedding's vocab rows when the embeddings are
tied (the values match at the start; the two are two parameters, each with its own use's grad), and its name map
says so: the class of Megatron-LM's ``untie_embeddings_and_output_weights`` left on, or a checkpoint converter
that copies the shared weight.

Exposed by: tied embeddings (any world size)."""

from torch import nn
from tpconform.impls.reference import ReferenceImpl
from tpconform.impls.tp_model import TPModel, build_tp_model


class CopiedHead(TPModel):
    def __init__(self, dense, group):
        super().__init__(dense, group)
        if self.config.tied:
            self.output.weight = nn.Parameter(self.tok_embeddings.weight.detach().clone())


class Impl(ReferenceImpl):
    name = "bug-model-builder-lm-head-copied"

    def build_tp_model(self, model, group):
        return build_tp_model(model, group, model_type=CopiedHead)

