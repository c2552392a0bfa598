"""Bug: "simulation" — every collective is replaced by local computation: the all-reduce returns
the local partial sum, and the all-gather pretends every rank holds this rank's shard.

Exposed by: any row case, or gathered column case, with world_size >= 2."""

import torch
from tpconform.impls.reference import Collectives, ReferenceImpl


class LocalOnly(Collectives):
    def all_reduce(self, x):
        return x.clone()

    def gather_last(self, x, full_size):
        sizes = self.sizes(full_size)
        return torch.cat([x[..., :n] if n <= x.shape[-1] else torch.zeros_like(x[..., :1]).expand(*x.shape[:-1], n)
                          for n in sizes], dim=-1)


class Impl(ReferenceImpl):
    name = "bug-simulated-collectives"

    def column(self, weight, bias, *, gather_output, group):
        from tpconform.impls.reference import ColumnParallelLinear

        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=LocalOnly(group))

    def row(self, weight, bias, *, input_is_parallel, group):
        from tpconform.impls.reference import RowParallelLinear

        return RowParallelLinear(weight, bias, input_is_parallel=input_is_parallel, comm=LocalOnly(group))
