"""The norm's weight grad is all-reduced and then averaged, as data parallelism averages its grads."""

import torch
from tpconform.families.replicated_norm.reference import ReplicatedRMSNorm
from tpconform.impls.reference import ReferenceImpl


class AllReduceMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, comm):
        ctx.comm = comm
        return w.view_as(w)

    @staticmethod
    def backward(ctx, grad):
        return ctx.comm.all_reduce(grad) / ctx.comm.world_size, None


class AveragedGradNorm(ReplicatedRMSNorm):
    def forward(self, x):
        return self.normalised(x) * AllReduceMean.apply(self.weight, self.comm)


class Impl(ReferenceImpl):
    name = "bug-norm-weight-grad-averaged"

    def replicated_norm(self, weight, *, eps, group):
        return AveragedGradNorm(weight, eps=eps, group=group)
