"""Bug: the all-reduce reduces ``t.contiguous()`` in place and returns ``t``. For a contiguous
tensor that *is* ``t`` (right, and what most tests feed); for a non-contiguous one it is a copy,
which is reduced and thrown away, and the un-reduced original is returned.

Where a non-contiguous tensor reaches the all-reduce: autograd keeps the layout of a 2-D input in its
grad (``addmm``'s backward returns a column-major grad for a column-major input), so the column
layer's backward all-reduce of the input grad gets a transposed tensor when the input was the
transpose of a column-major tensor — never for a contiguous or merely strided input.

Exposed by: a column case, world_size >= 2, a 2-D input in the ``transposed`` layout (the input grad
is this rank's partial)."""

import torch.distributed as dist
from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl


class InPlaceOnContiguousCopy(Collectives):
    def all_reduce(self, x):
        buffer = x.contiguous()
        dist.all_reduce(buffer, group=self.group)
        return x


class Impl(ReferenceImpl):
    name = "bug-contiguous-copy-reduced-and-discarded"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, group=group,
                                    comm=InPlaceOnContiguousCopy(group))
