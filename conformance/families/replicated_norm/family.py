"""A replicated parameter whose grad must be all-reduced across the TP group, as a family (the spec:
``verdict``): the RMSNorm of sequence parallelism. The folder brings everything it owns: its case (and
the impl method it needs, ``case.OFFERED_BY``), strategy, verdict, worker, likely causes (``diagnosis``),
the reference's method (``reference``) and its seeded bugs (``bugs/``)."""

from __future__ import annotations

from tpconform.families.common import ExtensionFamily
from tpconform.families.replicated_norm import verdict
from tpconform.families.replicated_norm.case import OFFERED_BY, ReplicatedNormCase
from tpconform.families.replicated_norm.diagnosis import likely_cause
from tpconform.families.replicated_norm.strategy import replicated_norm_cases
from tpconform.spec.family import Property


class ReplicatedNormFamily(ExtensionFamily):
    name = "replicated_norm"
    title = "a norm with a replicated weight on a sequence-parallel input"
    case_type = ReplicatedNormCase
    offered_by = OFFERED_BY
    verdict = verdict
    properties = {name: Property(name, fn, reads_backward=True) for name, fn in verdict.REPLICATED_NORM_SPEC.items()}

    def cases(self, suite, variant):
        return replicated_norm_cases(world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name))

    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = ReplicatedNormFamily()
