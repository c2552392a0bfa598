"""Bug: under sequence parallelism the model's loss averages the cross entropy over the rank's own sequence
shard of tokens (as if a data-parallel average over the ranks followed; none does over a tensor-parallel
group): each rank's loss is the mean of its local tokens, its grads scaled and missing the other tokens.

Exposed by: a sequence-parallel model at world size >= 2 whose tokens' losses differ between shards."""

import torch.distributed as dist
import torch.nn.functional as F
from tpconform.families.block.case import sequence_shards
from tpconform.families.model.plan import parallelize_model
from tpconform.impls.reference import ReferenceImpl


def local_tokens_loss(config, rank: int):
    sizes = sequence_shards(config.seq, config.world_size)
    lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])

    def loss_fn(logits, targets):
        return F.cross_entropy(logits[:, lo:hi].flatten(0, 1), targets[:, lo:hi].flatten(0, 1))
    return loss_fn


class Impl(ReferenceImpl):
    name = "bug-model-sp-loss-over-local-tokens"

    def parallelize_model(self, model, group):
        model = parallelize_model(model, group)
        if model.config.sequence_parallel and dist.get_world_size(group) > 1:
            model.loss_fn = local_tokens_loss(model.config, dist.get_rank(group))
        return model
