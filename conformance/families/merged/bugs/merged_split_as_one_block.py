"""Bug: the merged (QKV) column layer splits the stacked weight as one block: rank 0 gets all of Q
and part of K instead of its slice of Q, K and V.

Exposed by: a merged layer at world size >= 2 (``tests/properties/test_families.py``)."""

import torch
from tpconform.impls.reference import ColumnParallelLinear, ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-merged-split-as-one-block"

    def merged_column(self, weights, biases, *, group):
        bias = None if biases is None else torch.cat(biases)
        return ColumnParallelLinear(torch.cat(weights), bias, gather_output=False, group=group)
