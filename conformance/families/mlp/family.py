"""The tensor-parallel MLP (column → activation → row) as a family (the spec: ``verdict``)."""

from __future__ import annotations

import math
from typing import Optional

from tpconform.families.common import ExtensionFamily
from tpconform.families.mlp import verdict
from tpconform.families.mlp.case import MLPCase
from tpconform.families.mlp.diagnosis import likely_cause
from tpconform.families.mlp.strategy import mlp_cases
from tpconform.spec.family import Property


class MLPFamily(ExtensionFamily):
    name = "mlp"
    title = "the MLP built from the two layers"
    case_type = MLPCase
    verdict = verdict
    properties = {name: Property(name, fn, self_reported=name in verdict.SELF_REPORTED,
                                 reads_backward=name not in verdict.FORWARD)
                  for name, fn in verdict.MLP_SPEC.items()}

    # known-failure ``when`` keys beyond the case's fields; ``features_per_rank`` means what it means for the
    # layer families, the split dim's size / world size (here the hidden width both layers split): < 1, a
    # rank holds no hidden units
    # rank holds no hidden units; ``batch_dims`` and ``batch_numel`` are the input's, as there
    derived_facts = ("batch_dims", "batch_numel", "uneven", "features_per_rank")

    def facts(self, case: MLPCase) -> dict:
        return {**super().facts(case), "batch_dims": len(case.batch_shape), "batch_numel": math.prod(case.batch_shape),
                "uneven": case.uneven, "features_per_rank": case.hidden / case.world_size}

    def not_applicable(self, suite, variant, prop: str) -> Optional[str]:
        caps = suite.capabilities.of(self.name)
        if False not in caps.column_gather_output or True not in caps.row_input_is_parallel:
            return f"{suite.impl_spec} does not declare column gather_output=False and row input_is_parallel=True"
        return super().not_applicable(suite, variant, prop)

    def cases(self, suite, variant):
        return mlp_cases(world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name),
                         uneven=suite.capabilities.of(self.name).uneven_shards)


    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = MLPFamily()
