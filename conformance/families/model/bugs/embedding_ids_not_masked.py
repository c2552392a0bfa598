"""Bug: the model plan shards the (untied) embedding on the vocab by hand — each rank keeps its rows (a
plain parameter marked ``tp_dense_slice``), looks every id up shifted by its offset and clamped into its
rows, and all-reduces — without masking the ids it does not hold: their lookups add other tokens' rows.

Exposed by: untied embeddings at world size >= 2, every rank holding a row (otherwise: the reference plan)."""

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn
from tpconform.families.model.plan import parallelize_model, plan
from tpconform.impls.reference import ReferenceImpl


class UnmaskedVocabEmbedding(nn.Module):
    def __init__(self, weight: torch.Tensor, rank: int, p: int):
        super().__init__()
        rows = -(-weight.shape[0] // p)  # torch.chunk's split, as DTensor's
        self.start, stop = min(rank * rows, weight.shape[0]), min((rank + 1) * rows, weight.shape[0])
        self.weight = nn.Parameter(weight.detach()[self.start:stop].clone())
        setattr(self.weight, "tp_dense_slice", ((self.start, stop), (0, weight.shape[1])))

    def forward(self, ids):
        local = (ids - self.start).clamp(0, max(self.weight.shape[0] - 1, 0))  # never masked
        return dist_fn.all_reduce(F.embedding(local, self.weight), group=dist.group.WORLD)


class Impl(ReferenceImpl):
    name = "bug-model-embedding-ids-not-masked"

    def parallelize_model(self, model, group):
        p = dist.get_world_size(group)
        if model.config.tied or p == 1 or model.config.empty_vocab_shard:
            return parallelize_model(model, group)
        styles = {k: v for k, v in plan(model.config).items() if k != "tok_embeddings"}
        model = parallelize_model(model, group, styles)
        model.tok_embeddings = UnmaskedVocabEmbedding(model.tok_embeddings.weight, dist.get_rank(group), p)
        return model
