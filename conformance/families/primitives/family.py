"""The four collective autograd functions on their own, as a family (the spec: ``verdict``)."""

from __future__ import annotations

from tpconform.families.common import ExtensionFamily
from tpconform.families.primitives import verdict
from tpconform.families.primitives.case import PRIMITIVES, PrimitiveCase
from tpconform.families.primitives.diagnosis import likely_cause
from tpconform.spec.family import Property
from tpconform.strategies.primitives import primitive_cases


class PrimitivesFamily(ExtensionFamily):
    name = "primitives"
    title = "the collective primitives (copy-to, reduce-from, scatter-to, gather-from)"
    case_type = PrimitiveCase
    offered_by = "primitives"
    verdict = verdict
    properties = {name: Property(name, fn, self_reported=name in verdict.SELF_REPORTED)
                  for name, fn in verdict.PRIMITIVE_SPEC.items()}

    def variants(self):
        return PRIMITIVES

    def variant_of(self, case: PrimitiveCase) -> str:
        return case.primitive

    def cases(self, suite, primitive: str):
        return primitive_cases(primitive, world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name),
                               uneven=suite.capabilities.of(self.name).uneven_shards)


    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = PrimitivesFamily()
