"""Bug: the column layer gathers its output with a plain ``dist.all_gather`` outside autograd: the
output is right but carries no graph, so backward never reaches the weight, bias or input.

Exposed by: any gathered column case (the weight grad is missing — None)."""

import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, ReferenceImpl


class DetachedGatherColumn(ColumnParallelLinear):
    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)
        if self.gather_output:
            y = self.comm.gather_last(y, self.out_features)  # all_gather writes into fresh buffers: no grad_fn
        return y


class Impl(ReferenceImpl):
    name = "bug-gather-not-differentiable"

    def column(self, weight, bias, *, gather_output, group):
        return DetachedGatherColumn(weight, bias, gather_output=gather_output, group=group)
