"""Bug: vocab-parallel cross entropy's backward subtracts the target's one-hot on every rank, at the
clamped local column, instead of only on the rank that holds the target's column.

Exposed by: cross entropy at world size >= 2 (a target outside some rank's columns)."""

import torch
from tpconform.impls.cross_entropy import VocabParallelCrossEntropy
from tpconform.impls.reference import ReferenceImpl


class OnehotEveryRank(VocabParallelCrossEntropy):
    @staticmethod
    def backward(ctx, grad):
        softmax, _outside, local = ctx.saved_tensors
        onehot = torch.zeros_like(softmax).scatter_(-1, local.unsqueeze(-1), 1.0)  # not masked
        return (softmax - onehot) * grad.unsqueeze(-1), None, None


class Impl(ReferenceImpl):
    name = "bug-ce-onehot-every-rank"

    def vocab_parallel_cross_entropy(self, group):
        return lambda logits, target: OnehotEveryRank.apply(logits, target, group)
