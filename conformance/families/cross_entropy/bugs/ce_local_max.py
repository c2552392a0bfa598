"""Bug: vocab-parallel cross entropy shifts each rank's logits by that rank's own max (the MAX
all-reduce is missing), then all-reduces the sums of exponentials as if the shift were shared.

Exposed by: cross entropy at world size >= 2 whenever the ranks' maxima differ."""

import torch
import torch.distributed as dist
from tpconform.impls.cross_entropy import VocabParallelCrossEntropy
from tpconform.impls.reference import ReferenceImpl


class LocalMax(VocabParallelCrossEntropy):
    @staticmethod
    def forward(ctx, logits, target, group):
        rank, n = dist.get_rank(group), logits.shape[-1]
        start = rank * n
        shifted = logits - (logits.amax(-1, keepdim=True) if logits.numel() else 0)  # no all-reduce of the max
        outside = (target < start) | (target >= start + n)
        local = (target - start).clamp(0, max(n - 1, 0))
        predicted = shifted.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0.0)
        dist.all_reduce(predicted, group=group)
        exps = shifted.exp()
        total = exps.sum(-1)
        dist.all_reduce(total, group=group)
        ctx.save_for_backward(exps.div_(total.unsqueeze(-1)), outside, local)
        return total.log() - predicted


class Impl(ReferenceImpl):
    name = "bug-ce-local-max"

    def vocab_parallel_cross_entropy(self, group):
        return lambda logits, target: LocalMax.apply(logits, target, group)


_ = torch  # the module's imports, as a reader expects them
