"""Bug: a forward-only (inference) row layer, vLLM-style (the bias added on rank 0 before the
reduction), takes a "decode" fast path for a single row of input (one token) that forgets the
all-reduce: each rank returns its partial output.

Only a suite that can run a forward-only layer finds it: the layer has no backward (it declares
``backward=False``); made to declare one, every example would only show a crash.
Exposed by: a row layer fed one input row at world size >= 2 (``output_matches_the_dense_layer``)."""

import math

import torch.nn.functional as F
from tpconform.impls.limited import ForwardOnlyImpl, inference_only
from tpconform.impls.reference import RowParallelLinear


class DecodeSkipsAllReduce(RowParallelLinear):
    def forward(self, x):
        x = x if self.input_is_parallel else self.comm.split_last(x)
        partial = F.linear(x, self.weight, self.bias if self.comm.rank == 0 else None)
        if math.prod(x.shape[:-1]) == 1:  # the decode path: one token
            return partial
        return self.comm.all_reduce(partial)


class Impl(ForwardOnlyImpl):
    name = "bug-inference-decode-skips-all-reduce"

    def row(self, weight, bias, *, input_is_parallel, group):
        return inference_only(DecodeSkipsAllReduce(weight, bias, input_is_parallel=input_is_parallel, group=group))
