"""Bug: not tensor-parallel, in disguise. The column layer keeps a hidden copy of every rank's
block of the master weight (and bias) from construction and, with ``gather_output=True``, computes
the other ranks' output columns itself instead of all-gathering them; its own block comes from its
shard, so the shards, the output, the input grad (autograd through every block) and the shard grads
are all right, and nothing is communicated. Once the shards are trained, the other blocks are stale.

Exposed by: the training step, a column-gathered case with world_size >= 2 (and, at world size >= 2,
the minimum communication a rank holding only its shard needs)."""

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ColumnParallelLinear, ReferenceImpl


class MasterCopyColumn(ColumnParallelLinear):
    def __init__(self, weight, bias=None, **kw):
        super().__init__(weight, bias, **kw)
        sizes = self.comm.sizes(weight.shape[0])
        blocks = torch.split(weight.detach(), sizes)
        self.master = [w.clone() for w in blocks]
        self.master_bias = [None] * len(sizes) if bias is None else [b.clone() for b in torch.split(bias, sizes)]

    def forward(self, x):
        if not self.gather_output:
            return super().forward(x)
        rank = self.comm.rank
        return torch.cat([F.linear(x, self.weight, self.bias) if r == rank else F.linear(x, w, b)
                          for r, (w, b) in enumerate(zip(self.master, self.master_bias))], dim=-1)


class Impl(ReferenceImpl):
    name = "bug-keeps-master-weight"

    def column(self, weight, bias, *, gather_output, group):
        return MasterCopyColumn(weight, bias, gather_output=gather_output, group=group)
