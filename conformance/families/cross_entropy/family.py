"""Vocab-parallel cross entropy as a family (the spec: ``verdict``): one folder with its case, strategy,
verdict, worker, likely causes (``diagnosis``), reference method (``reference``) and seeded bugs (``bugs/``)."""

from __future__ import annotations

from tpconform.families.common import ExtensionFamily
from tpconform.families.cross_entropy import verdict
from tpconform.families.cross_entropy.case import CrossEntropyCase
from tpconform.families.cross_entropy.diagnosis import likely_cause
from tpconform.families.cross_entropy.strategy import cross_entropy_cases
from tpconform.spec.family import Property


class CrossEntropyFamily(ExtensionFamily):
    name = "cross_entropy"
    title = "vocab-parallel cross entropy"
    case_type = CrossEntropyCase
    offered_by = "vocab_parallel_cross_entropy"
    verdict = verdict
    properties = {name: Property(name, fn, self_reported=name in verdict.SELF_REPORTED,
                                 reads_backward=name != "cross_entropy_loss_matches_the_dense_loss")
                  for name, fn in verdict.CROSS_ENTROPY_SPEC.items()}

    def cases(self, suite, variant):
        return cross_entropy_cases(world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name))

    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = CrossEntropyFamily()
