"""The built-in reference impl: the layers of :mod:`tpconform.impls.layers` behind the impl protocol, and
every other family's layers from its folder (``conformance/families/<name>/reference.py``). The building blocks are re-exported here,
where the seeded bugs of ``impls/zoo`` take them from."""

from __future__ import annotations

from tpconform.families.folders import each
from tpconform.impls.layers import (  # noqa: F401 - re-exported for impls/zoo
    Collectives,
    ColumnParallelLinear,
    CopyToParallel,
    GatherFromParallel,
    ReduceFromParallel,
    RowParallelLinear,
    ScatterToParallel,
    _offset,
    partition_sizes,
)
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

# each family's reference method: the ``Reference`` mixin of ``conformance/families/<name>/reference.py``
# (found by convention, conformance/families/folders.py), so a new family's layer needs no line here
FAMILY_REFERENCES: tuple[type, ...] = tuple(module.Reference for _, module in each("reference"))


class ReferenceImpl(*FAMILY_REFERENCES, TensorParallelImpl):  # type: ignore[misc]
    """The built-in reference: every option, uneven shards, every dtype; every family's layers from its folder."""

    name = "reference"
    version = "1"
    capabilities = Capabilities()

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, group=group)

    def row(self, weight, bias, *, input_is_parallel, group):
        return RowParallelLinear(weight, bias, input_is_parallel=input_is_parallel, group=group)
