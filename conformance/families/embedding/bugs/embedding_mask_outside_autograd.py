"""Bug: the vocab-parallel embedding zeroes the positions of ids it does not hold behind autograd's
back (``.data``): the output is right, but their grads flow into row 0 of every rank's shard.

Exposed by: world size >= 2 with some id outside a rank's rows and a non-zero upstream grad."""

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl
from tpconform.impls.vocab_parallel import VocabParallelEmbedding


class UntrackedMaskEmbedding(VocabParallelEmbedding):
    def forward(self, ids):
        if self.weight.shape[0] == 0:
            return ReduceFromParallel.apply(self.local_lookup(ids), self.comm)
        outside = (ids < self.start) | (ids >= self.end)
        y = F.embedding(torch.where(outside, torch.zeros_like(ids), ids - self.start), self.weight)
        y.data[outside] = 0
        return ReduceFromParallel.apply(y, self.comm)


class Impl(ReferenceImpl):
    name = "bug-embedding-mask-outside-autograd"

    def vocab_parallel_embedding(self, weight, *, group):
        return UntrackedMaskEmbedding(weight, group=group)
