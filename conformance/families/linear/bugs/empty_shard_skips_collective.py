"""Bug: a row rank with an empty input slice "has nothing to contribute" and returns the bias
without joining the all-reduce — the other ranks wait in the all-reduce forever (a hang).

Exposed by: a row case with in_features < world_size (some rank holds no columns); the suite
reports it as a hang after --tp-timeout, with every rank's stack."""

import torch
from tpconform.impls.reference import ReferenceImpl, RowParallelLinear


class SkippingRow(RowParallelLinear):
    def forward(self, x):
        if self.weight.shape[1] == 0:
            y = torch.zeros(*x.shape[:-1], self.weight.shape[0], dtype=x.dtype)
            return y if self.bias is None else y + self.bias
        return super().forward(x)


class Impl(ReferenceImpl):
    name = "bug-empty-shard-skips-collective"

    def row(self, weight, bias, *, input_is_parallel, group):
        return SkippingRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
