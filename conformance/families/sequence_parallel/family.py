"""Sequence-parallel column and row layers as a family (the spec: ``verdict``)."""

from __future__ import annotations

from tpconform.families.common import ExtensionFamily
from tpconform.families.linear.family import FAMILY as LINEAR
from tpconform.families.sequence_parallel import verdict
from tpconform.families.sequence_parallel.case import SequenceParallelCase
from tpconform.families.sequence_parallel.diagnosis import likely_cause
from tpconform.families.sequence_parallel.strategy import sequence_parallel_cases
from tpconform.spec.family import Property


class SequenceParallelFamily(ExtensionFamily):
    name = "sequence_parallel"
    title = "sequence-parallel column and row layers"
    case_type = SequenceParallelCase
    offered_by = "column_sequence_parallel / row_sequence_parallel"
    verdict = verdict
    properties = {name: Property(name, fn, reads_backward=name != "sequence_parallel_output_matches_the_dense_layer")
                  for name, fn in verdict.SP_SPEC.items()}
    derived_facts = LINEAR.derived_facts  # its cases are layer cases

    def variants(self):
        return ("column", "row")

    def variant_of(self, case: SequenceParallelCase) -> str:
        return case.kind

    def facts(self, case: SequenceParallelCase) -> dict:
        return {**LINEAR.facts(case), "variant": self.variant_of(case)}

    def report_notes(self, ev) -> list[str]:
        finalized = sorted({r.get("grads_finalized_by") for r in ev.ranks} - {None})
        return [f"grads judged after the impl's declared finalisation: {'; '.join(finalized)}"] if finalized else []

    def cases(self, suite, kind: str):
        return sequence_parallel_cases(kind, world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name))


    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = SequenceParallelFamily()
