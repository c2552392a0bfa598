"""The reference's replicated norm (``impl.replicated_norm``, declared in ``case.py``), composed into
``tpconform.impls.reference.ReferenceImpl``: an RMSNorm whose replicated weight enters through copy-to
(identity forward, all-reduce of its grad backward), so each rank's partial weight grad — its own
tokens' share — is summed over the TP group, as Megatron-LM's ``finalize_model_grads`` does for
sequence-parallel norms. 16-bit inputs are normalised in float32 (as fused norms do)."""

from __future__ import annotations

import torch
from tpconform.impls.layers import Collectives, CopyToParallel


class ReplicatedRMSNorm(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, *, eps: float, group=None):
        super().__init__()
        self.weight = torch.nn.Parameter(weight.detach().clone())
        self.eps, self.comm = eps, Collectives(group)

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """``x / sqrt(mean(x²) + eps)``, in float32 at least."""
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalised(x) * CopyToParallel.apply(self.weight, self.comm)


class Reference:
    def replicated_norm(self, weight, *, eps, group):
        return ReplicatedRMSNorm(weight, eps=eps, group=group)
