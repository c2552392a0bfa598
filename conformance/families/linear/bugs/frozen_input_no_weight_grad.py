"""Bug: the row layer computes its weight grad only when its input requires grad (a shortcut taken
"when nothing upstream trains"): with a frozen input the weight gets no grad at all.

Exposed by: an input that does not require grad (the first layer after a frozen embedding)."""

import torch
from tpconform.impls.reference import ReferenceImpl, RowParallelLinear


class FrozenShortcutRow(RowParallelLinear):
    def forward(self, x):
        if not x.requires_grad:
            with torch.no_grad():  # the bug: "no input grad is needed, so no graph is needed"
                y = super().forward(x)
            return y.requires_grad_(self.training and torch.is_grad_enabled())
        return super().forward(x)


class Impl(ReferenceImpl):
    name = "bug-frozen-input-no-weight-grad"

    def row(self, weight, bias, *, input_is_parallel, group):
        return FrozenShortcutRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
