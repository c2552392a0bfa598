"""Bug: the column layer keeps its shard as built in a plain attribute (not a parameter or buffer, so
not in its ``state_dict``) and copies it into ``.weight`` at its first call ("materialise on first
use"). A layer trained from its first call is right; a fresh layer that loads a checkpoint
(``load_state_dict``) before its first call has the checkpoint overwritten by its construction weights.

Exposed by: ``state_dict()`` of a trained layer loaded into a fresh one; a conversion is no trouble
(``copy_`` converts the kept shard to the parameter's dtype)."""

import torch
from tpconform.impls.reference import ColumnParallelLinear, ReferenceImpl


class MaterialisingColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, **kwargs):
        super().__init__(weight, bias, **kwargs)
        self._initial = self.weight.detach().clone()  # a plain attribute: outside the state_dict
        self._materialised = False

    def forward(self, x):
        if not self._materialised:
            with torch.no_grad():
                self.weight.copy_(self._initial)  # the bug: overwrites whatever was loaded since construction
            self._materialised = True
        return super().forward(x)


class Impl(ReferenceImpl):
    name = "bug-first-call-restores-built-weight"

    def column(self, weight, bias, *, gather_output, group):
        return MaterialisingColumn(weight, bias, gather_output=gather_output, group=group)
