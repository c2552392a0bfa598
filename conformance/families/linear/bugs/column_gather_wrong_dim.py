"""Bug: the column layer all-gathers along dim 1 — written for ``[tokens, features]`` inputs —
instead of the last dim.

For 1-D and 2-D inputs dim 1 *is* the last dim and the output is right; with two or more batch dims
the shards are stacked along a batch dim. Exposed by: a gathered column case with world_size >= 2
and at least two batch dims (the output has world_size × the second batch dim)."""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl


class GatherAlongDim1(Collectives):
    local_shape = None

    def gather_last(self, x, full_size):
        if x.dim() <= 2:
            return super().gather_last(x, full_size)
        self.local_shape = x.shape
        padded = F.pad(x.contiguous(), (0, max(self.sizes(full_size)) - x.shape[-1]))
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat(parts, dim=1)

    def split_last(self, x):  # the gather's backward: undo the same (wrong) layout
        if x.dim() <= 2 or self.local_shape is None:
            return super().split_last(x)
        rows, cols = self.local_shape[1], self.local_shape[-1]
        return x.narrow(1, self.rank * rows, rows)[..., :cols].contiguous()


class Impl(ReferenceImpl):
    name = "bug-column-gather-wrong-dim"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=GatherAlongDim1(group))
