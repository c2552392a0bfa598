"""A transformer block parallelised by the impl's own plan, as a family (the spec: ``verdict``). Everything
it owns is in this folder: the case, the dense block, the bounds, the verdict, the worker, the strategy,
the likely causes, the reference plan (``plan.py``) and builder (``tpconform.impls.tp_block``), offered through
``reference.py``, and its seeded bugs (``bugs/``); the impl's optional methods it needs, ``parallelize_block``
(variant "plan") and ``build_tp_block`` (variant "builder"), are declared in ``case.py``."""

from __future__ import annotations

from typing import Optional

from tpconform.families.block import verdict
from tpconform.families.block.case import HANDED_IN, OFFERED_BY, BlockCase
from tpconform.families.block.diagnosis import likely_cause
from tpconform.families.block.strategy import DTYPES, block_anchors, block_cases
from tpconform.families.common import ExtensionFamily
from tpconform.spec.family import Property

# the optimizer step and the second pass run only for the property that reads them
STAGES = ("first pass", "step")


class BlockFamily(ExtensionFamily):
    name = "block"
    title = "a transformer block parallelised by the impl's plan"
    case_type = BlockCase
    offered_by = OFFERED_BY
    verdict = verdict
    example_share = 0.25  # per variant (plan, builder): the two together draw what the plan alone drew
    stages = STAGES
    properties = {name: Property(name, fn, self_reported=name in verdict.SELF_REPORTED,
                                 reads_backward=name not in verdict.FORWARD,
                                 stages=STAGES if name == verdict.STEP_PROPERTY else STAGES[:1])
                  for name, fn in verdict.BLOCK_SPEC.items()}
    # known-failure ``when`` keys beyond the case's fields: ``kv_heads_per_rank`` < 1 is fewer kv heads than ranks;
    # ``heads_divide`` (query and kv heads), ``ffn_divides``, ``sequence_divides``: by the world size
    derived_facts = ("expressible", "kv_heads_per_rank", "heads_divide", "ffn_divides", "sequence_divides")

    def variants(self):
        return HANDED_IN

    def variant_of(self, case: BlockCase) -> str:
        return case.handed_in

    def facts(self, case: BlockCase) -> dict:
        p = case.world_size
        return {**super().facts(case), "expressible": case.expressible, "kv_heads_per_rank": case.n_kv_heads / p,
                "heads_divide": case.n_heads % p == 0 and case.n_kv_heads % p == 0, "ffn_divides": case.ffn % p == 0,
                "sequence_divides": case.seq % p == 0}

    def _dtypes(self, suite) -> list[str]:
        return [d for d in suite._dtypes(self.name) if d in DTYPES]

    def not_applicable(self, suite, variant, prop: str) -> Optional[str]:
        if not self._dtypes(suite) and suite._dtypes(self.name):
            return f"the block's error bound is derived for {list(DTYPES)} only, none of them in this run"
        return super().not_applicable(suite, variant, prop)

    def cases(self, suite, variant):
        return block_cases(variant or "plan", world_sizes=suite.world_sizes,
                           dtypes=self._dtypes(suite) or list(DTYPES))

    def anchors(self, suite, variant):
        return block_anchors(variant or "plan", world_sizes=suite.world_sizes,
                             dtypes=self._dtypes(suite) or list(DTYPES))

    def run(self, suite, case, stages=None):
        return verdict.evidence(suite, case, step=stages is None or "step" in stages)

    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = BlockFamily()
