"""The norm uses its replicated weight as is: each rank's weight grad is its own tokens' share only."""

from tpconform.families.replicated_norm.reference import ReplicatedRMSNorm
from tpconform.impls.reference import ReferenceImpl


class PartialGradNorm(ReplicatedRMSNorm):
    def forward(self, x):
        return self.normalised(x) * self.weight


class Impl(ReferenceImpl):
    name = "bug-norm-weight-grad-not-reduced"

    def replicated_norm(self, weight, *, eps, group):
        return PartialGradNorm(weight, eps=eps, group=group)
