"""Bug: the vocab-parallel embedding clamps ids into its rows instead of masking the ones it does
not hold: every rank adds a wrong vector for each id another rank owns.

Exposed by: world size >= 2 with some id outside rank 0's rows."""

import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl
from tpconform.impls.vocab_parallel import VocabParallelEmbedding


class ClampedEmbedding(VocabParallelEmbedding):
    def forward(self, ids):
        if self.weight.shape[0] == 0:
            return ReduceFromParallel.apply(self.local_lookup(ids), self.comm)
        local = (ids - self.start).clamp(0, self.weight.shape[0] - 1)
        return ReduceFromParallel.apply(F.embedding(local, self.weight), self.comm)


class Impl(ReferenceImpl):
    name = "bug-embedding-ids-clamped"

    def vocab_parallel_embedding(self, weight, *, group):
        return ClampedEmbedding(weight, group=group)
