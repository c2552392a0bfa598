"""Bug: not tensor-parallel at all. The column layer holds its shard but all-gathers the whole
weight and bias in forward and computes the dense layer locally. Outputs, grads and shard shapes are
all right; what gives it away is the communication: it sends a weight shard (rows × in_features)
where a tensor-parallel layer sends activations.

Exposed by: a gathered column case whose batch is small against the weight (an empty batch: any)."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, GatherFromParallel, ReferenceImpl


class GatheredWeightColumn(ColumnParallelLinear):
    def forward(self, x):
        if not self.gather_output:
            return super().forward(x)
        weight = GatherFromParallel.apply(self.weight.t(), self.out_features, self.comm).t()
        bias = None if self.bias is None else GatherFromParallel.apply(self.bias, self.out_features, self.comm)
        return F.linear(x, weight, bias)


class Impl(ReferenceImpl):
    name = "bug-full-weight-gathered"

    def column(self, weight, bias, *, gather_output, group):
        return GatheredWeightColumn(weight, bias, gather_output=gather_output, group=group)
