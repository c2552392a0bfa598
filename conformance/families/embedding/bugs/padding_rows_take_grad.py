"""Bug: a padded vocab-parallel embedding looks up the ids it does not hold in its first padding
row (a "sink" row) and zeroes those positions behind autograd's back (``.data``): the output and
every vocabulary row's grad are right, but the padding row collects the grads of other ranks' ids,
so the grad norm (and its clipping) differs from the dense model's.

Exposed by: world size >= 2, a rank holding padding rows, some id another rank owns."""

import torch
import torch.nn.functional as F
from tpconform.impls.padded import PaddedImpl, PaddedVocabEmbedding
from tpconform.impls.reference import ReduceFromParallel


class SinkRowEmbedding(PaddedVocabEmbedding):
    def __init__(self, weight, *, group=None):
        super().__init__(weight, group=group)
        self.sink = max(0, weight.shape[0] - self.start)  # this rank's first padding row, if it has one

    def forward(self, ids):
        if self.sink >= self.weight.shape[0]:  # no padding row here: the correct lookup
            return ReduceFromParallel.apply(self.local_lookup(ids), self.comm)
        outside = (ids < self.start) | (ids >= self.end)
        y = F.embedding(torch.where(outside, torch.full_like(ids, self.sink), ids - self.start), self.weight)
        y.data[outside] = 0
        return ReduceFromParallel.apply(y, self.comm)


class Impl(PaddedImpl):
    name = "bug-padding-rows-take-grad"

    def vocab_parallel_embedding(self, weight, *, group):
        return SinkRowEmbedding(weight, group=group)
