"""Bug: a forward-only (inference) merged QKV layer adds the bias of its first block (Q) only: a fused
kernel written for a model whose K and V have no bias (Qwen's QKV has all three).

Only a suite that can run a forward-only layer finds it: the layer has no backward (it declares
``backward=False``); made to declare one, every example would only show a crash.
Exposed by: a merged layer with a bias (``merged_column_output_matches_the_dense_layer``)."""

import torch.nn.functional as F
from tpconform.impls.layers import CopyToParallel
from tpconform.impls.limited import ForwardOnlyImpl, inference_only
from tpconform.impls.merged import MergedColumnParallelLinear


class FirstBlockBiasOnly(MergedColumnParallelLinear):
    def __init__(self, weights, biases=None, *, group=None):
        super().__init__(weights, biases, group=group)
        self.first_rows = weights[0].shape[0] // self.comm.world_size  # this rank's rows of the first block

    def forward(self, x):
        y = F.linear(CopyToParallel.apply(x, self.comm), self.weight)
        if self.bias is None:
            return y
        return y + F.pad(self.bias[:self.first_rows], (0, self.bias.shape[0] - self.first_rows))


class Impl(ForwardOnlyImpl):
    name = "bug-inference-merged-bias-first-block-only"

    def merged_column(self, weights, biases, *, group):
        return inference_only(FirstBlockBiasOnly(weights, biases, group=group))
