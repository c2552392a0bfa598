"""The reference's vocab-parallel cross entropy (after Megatron-LM's ``vocab_parallel_cross_entropy``):
logits sharded along the vocabulary, one loss per token on every rank."""

from __future__ import annotations

import torch
import torch.distributed as dist


class VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, group, start=None) -> torch.Tensor:
        rank, n = dist.get_rank(group), logits.shape[-1]
        start = rank * n if start is None else start  # this rank's first vocab column (uneven shards: given)
        # one shift for every rank: the max over the whole vocabulary
        logits_max = logits.amax(-1) if logits.numel() else logits.sum(-1)
        dist.all_reduce(logits_max, op=dist.ReduceOp.MAX, group=group)
        shifted = logits - logits_max.unsqueeze(-1)  # not in place: the caller keeps its logits
        # the target's logit, from the rank that holds its column only
        outside = (target < start) | (target >= start + n)
        local = (target - start).clamp(0, max(n - 1, 0))
        predicted = shifted.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0.0)
        dist.all_reduce(predicted, group=group)
        exps = shifted.exp()
        total = exps.sum(-1)
        dist.all_reduce(total, group=group)
        ctx.save_for_backward(exps.div_(total.unsqueeze(-1)), outside, local)
        return total.log() - predicted

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        softmax, outside, local = ctx.saved_tensors
        g = softmax.clone()
        onehot = torch.zeros_like(g).scatter_(-1, local.unsqueeze(-1), 1.0) * (~outside).unsqueeze(-1)
        return (g - onehot) * grad.unsqueeze(-1), None, None, None


def vocab_parallel_cross_entropy(group):
    return lambda logits, target: VocabParallelCrossEntropy.apply(logits, target, group)
