"""Bug: the model builder's vocab-parallel cross entropy takes each rank's first vocab column as ``rank x its
own column count`` (every shard assumed equal), so with a vocab the world size does not divide the target's
logit is looked up at the wrong offset on the ranks after a shorter or longer shard.

Exposed by: loss parallelism with a vocab not divisible by the world size (>= 2 ranks)."""

from tpconform.impls.cross_entropy import VocabParallelCrossEntropy
from tpconform.impls.reference import ReferenceImpl
from tpconform.impls.tp_model import TPModel, build_tp_model


class EqualShardsLoss(TPModel):
    def loss_fn(self, logits, targets):
        if not self.config.loss_parallel:
            return super().loss_fn(logits, targets)
        return VocabParallelCrossEntropy.apply(logits.flatten(0, 1), targets.flatten(0, 1), self.comm.group).mean()


class Impl(ReferenceImpl):
    name = "bug-model-builder-loss-equal-shards"

    def build_tp_model(self, model, group):
        return build_tp_model(model, group, model_type=EqualShardsLoss)
