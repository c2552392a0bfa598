"""Merged column layers (QKV, gate-up) as a family (the spec: ``verdict``)."""

from __future__ import annotations

from tpconform.families.common import ExtensionFamily
from tpconform.families.merged import verdict
from tpconform.families.merged.case import MergedCase
from tpconform.families.merged.diagnosis import likely_cause
from tpconform.families.merged.strategy import merged_cases
from tpconform.spec.family import Property


class MergedFamily(ExtensionFamily):
    name = "merged"
    title = "merged column layers (QKV, gate-up)"
    case_type = MergedCase
    offered_by = "merged_column"
    verdict = verdict
    properties = {name: Property(name, fn, reads_backward=name not in verdict.FORWARD)
                  for name, fn in verdict.MERGED_SPEC.items()}

    def cases(self, suite, variant):
        return merged_cases(world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name),
                            equal_blocks=suite.capabilities.of(self.name).equal_blocks)

    def declared_limits(self, suite) -> list[str]:
        equal = suite.capabilities.of(self.name).equal_blocks
        lines = [f"{self.name}: equal blocks only (capability equal_blocks): blocks of different sizes "
                 "(grouped-query attention's smaller K and V) not drawn"] if equal else []
        return lines + super().declared_limits(suite)


    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = MergedFamily()
