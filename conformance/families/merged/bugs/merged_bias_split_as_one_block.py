"""Bug: the merged (QKV) column layer shards its weight block by block but its bias as one block:
the weight shards are right, each rank adds the wrong bias entries.

Exposed by: a merged layer with bias at world size >= 2 (``tests/properties/test_families.py``)."""

import torch
from torch import nn
from tpconform.impls.merged import MergedColumnParallelLinear
from tpconform.impls.reference import ReferenceImpl


class Impl(ReferenceImpl):
    name = "bug-merged-bias-split-as-one-block"

    def merged_column(self, weights, biases, *, group):
        layer = MergedColumnParallelLinear(weights, biases, group=group)
        if biases is not None:
            stacked, n = torch.cat(biases), layer.weight.shape[0]
            layer.bias = nn.Parameter(stacked[layer.comm.rank * n:(layer.comm.rank + 1) * n].clone())
        return layer
