"""Bug: the sequence-parallel row layer adds its bias to its sequence shard without reducing the
bias grad: each rank's bias grad sums only its own shard's rows.

(megatron-core leaves this reduction to the framework; a layer checked on its own must do it.)
Exposed by: a sequence-parallel row case with bias, world size >= 2 and a non-empty sequence."""

import torch.nn.functional as F
from tpconform.impls.reference import ReferenceImpl
from tpconform.impls.sequence_parallel import ReduceScatterToSequenceParallel, SequenceParallelRow


class PartialBiasGradRow(SequenceParallelRow):
    def forward(self, x):
        y = ReduceScatterToSequenceParallel.apply(F.linear(x, self.weight), self.comm)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-sp-row-bias-grad-partial"

    def row_sequence_parallel(self, weight, bias, *, group):
        return PartialBiasGradRow(weight, bias, group=group)
