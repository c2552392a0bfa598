"""Bug: vocab-parallel cross entropy shifts the logits by their max in place (``logits -= max``, as
older Megatron-LM did), so the caller's logits change under it.

Exposed by: cross entropy on any logits whose max is not 0."""

import torch
import torch.distributed as dist
from tpconform.impls.cross_entropy import VocabParallelCrossEntropy
from tpconform.impls.reference import ReferenceImpl


class InPlace(VocabParallelCrossEntropy):
    @staticmethod
    def forward(ctx, logits, target, group):
        logits_max = logits.amax(-1) if logits.numel() else logits.sum(-1)
        dist.all_reduce(logits_max, op=dist.ReduceOp.MAX, group=group)
        logits.sub_(logits_max.unsqueeze(-1))  # in place on the caller's tensor
        return VocabParallelCrossEntropy.forward(ctx, logits, target, group)


class Impl(ReferenceImpl):
    name = "bug-ce-logits-shifted-in-place"

    def vocab_parallel_cross_entropy(self, group):
        return lambda logits, target: InPlace.apply(logits, target, group)


_ = torch
