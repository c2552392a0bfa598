"""Bug: the column layer computes with a second parameter, ``weight_compute`` (a copy of its shard
made at construction, say for a fused kernel), and reports that parameter's grad as its shard's grad;
``.weight`` holds the right shard but never gets a grad. Every forward and backward is right, and the
grad read back is right — but an optimizer stepping ``.weight`` skips it (its ``.grad`` is ``None``),
and nothing ever updates the tensor the layer computes with.

Exposed by: the training step, any column case with a non-empty batch."""

import torch.nn.functional as F
from torch import nn
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


class TwoWeightsColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, **kw):
        super().__init__(weight, bias, **kw)
        self.weight_compute = nn.Parameter(self.weight.detach().clone())

    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight_compute, self.bias)
        if self.gather_output:
            y = GatherFromParallel.apply(y, self.out_features, self.comm)
        return y


class Impl(ReferenceImpl):
    name = "bug-grad-on-another-tensor"

    def column(self, weight, bias, *, gather_output, group):
        return TwoWeightsColumn(weight, bias, gather_output=gather_output, group=group)

    def shard_grads(self, layer):
        grads = super().shard_grads(layer)
        return (layer.weight_compute.grad if hasattr(layer, "weight_compute") else grads[0]), grads[1]
