"""The four collective autograd functions on their own, as a family (the spec: ``verdict``)."""

from __future__ import annotations

from tpconform.families.common import ExtensionFamily
from tpconform.families.primitives import verdict
from tpconform.families.primitives.case import PRIMITIVES, PrimitiveCase
from tpconform.families.primitives.diagnosis import likely_cause
from tpconform.families.primitives.strategy import primitive_cases
from tpconform.spec.family import Property


class PrimitivesFamily(ExtensionFamily):
    name = "primitives"
    title = "the collective primitives (copy-to, reduce-from, scatter-to, gather-from)"
    case_type = PrimitiveCase
    offered_by = "primitives"
    verdict = verdict
    properties = {name: Property(name, fn, self_reported=name in verdict.SELF_REPORTED,
                                 reads_backward=name != "primitive_forward_matches_its_dense_meaning")
                  for name, fn in verdict.PRIMITIVE_SPEC.items()}

    def variants(self):
        return PRIMITIVES

    def variant_of(self, case: PrimitiveCase) -> str:
        return case.primitive

    def not_declared(self, suite, variant, prop: str):
        """Also: a primitive the impl does not offer (capability ``primitives``: transformers' TP has
        copy-to and reduce-from only) is not checked."""
        offered = suite.capabilities.of(self.name).primitives
        if variant is not None and str(variant) not in offered:
            return (f"not offered: {suite.impl_spec} declares the primitives {', '.join(offered)} only "
                    f"(capability primitives): {variant} is not checked")
        return super().not_declared(suite, variant, prop)

    def declared_limits(self, suite) -> list[str]:
        offered = suite.capabilities.of(self.name).primitives
        missing = [p for p in PRIMITIVES if p not in offered]
        lines = [f"{self.name}: offers {', '.join(offered)} only (capability primitives): "
                 f"{', '.join(missing)} not offered, not checked"] if missing else []
        return lines + super().declared_limits(suite)

    def cases(self, suite, primitive: str):
        return primitive_cases(primitive, world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name),
                               uneven=suite.capabilities.of(self.name).uneven_shards)


    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = PrimitivesFamily()
