"""The norm's partial weight grads are all-gathered and each rank sums them starting from its own: every
rank gets the dense grad, each rounded its own way (the replicas drift apart)."""

import torch
import torch.distributed as dist
from tpconform.families.replicated_norm.reference import ReplicatedRMSNorm
from tpconform.impls.reference import ReferenceImpl


class GatherAndSumFromMine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, comm):
        ctx.comm = comm
        return w.view_as(w)

    @staticmethod
    def backward(ctx, grad):
        comm = ctx.comm
        parts = [torch.empty_like(grad.contiguous()) for _ in range(comm.world_size)]
        dist.all_gather(parts, grad.contiguous(), group=comm.group)
        total = parts[comm.rank].clone()
        for q in range(1, comm.world_size):
            total = total + parts[(comm.rank + q) % comm.world_size]
        return total, None


class RankOrderNorm(ReplicatedRMSNorm):
    def forward(self, x):
        return self.normalised(x) * GatherAndSumFromMine.apply(self.weight, self.comm)


class Impl(ReferenceImpl):
    name = "bug-norm-weight-grad-summed-in-rank-order"

    def replicated_norm(self, weight, *, eps, group):
        return RankOrderNorm(weight, eps=eps, group=group)
