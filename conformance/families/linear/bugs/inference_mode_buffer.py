"""Bug: the column layer caches its transposed weight per dtype on first use; made under
``torch.inference_mode()`` (an evaluation before training), the cache is an inference tensor, and
the next training call raises ("Inference tensors cannot be saved for backward").

Exposed by: a call under ``torch.inference_mode()`` before a training call."""

import torch
from tpconform.impls.reference import ColumnParallelLinear, CopyToParallel, GatherFromParallel, ReferenceImpl


class CachingColumn(ColumnParallelLinear):
    def forward(self, x):
        if not hasattr(self, "_w_t"):
            self._w_t = self.weight.t() * 1  # the bug: made once, whatever mode the first call runs in
        y = torch.matmul(CopyToParallel.apply(x, self.comm), self._w_t if not torch.is_grad_enabled()
                         or torch.is_inference(self._w_t) else self.weight.t())
        if self.bias is not None:
            y = y + self.bias
        return GatherFromParallel.apply(y, self.out_features, self.comm) if self.gather_output else y


class Impl(ReferenceImpl):
    name = "bug-inference-mode-buffer"

    def column(self, weight, bias, *, gather_output, group):
        return CachingColumn(weight, bias, gather_output=gather_output, group=group)
