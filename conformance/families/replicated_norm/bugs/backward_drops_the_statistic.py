"""The norm's factor 1/sqrt(mean(x²) + eps) is detached, so the backward treats it as a constant."""

import torch
from tpconform.families.replicated_norm.reference import ReplicatedRMSNorm
from tpconform.impls.reference import CopyToParallel, ReferenceImpl


class ConstantStatisticNorm(ReplicatedRMSNorm):
    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        k = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps).detach()
        return (h * k).to(x.dtype) * CopyToParallel.apply(self.weight, self.comm)


class Impl(ReferenceImpl):
    name = "bug-norm-backward-drops-the-statistic"

    def replicated_norm(self, weight, *, eps, group):
        return ConstantStatisticNorm(weight, eps=eps, group=group)
