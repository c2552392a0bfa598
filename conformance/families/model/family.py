"""A tiny whole model parallelised by the impl's plan (or tp_plan, or built by its own builder), as a family (the
spec: ``verdict``). Everything it owns is in this folder: the case, the dense model (built on the block family's
dense block), the bounds, the verdict, the worker, the strategy, the likely causes, the reference plans
(``plan.py``, and ``tp_plan.py``'s HF-style style names; the builder is ``tpconform.impls.tp_model``, all offered
through ``reference.py``) and its seeded bugs (``bugs/``); the impl's optional
methods it needs, ``parallelize_model`` / ``model_tp_plan``, are declared in ``case.py``."""

from __future__ import annotations

from typing import Optional

from tpconform.families.common import ExtensionFamily
from tpconform.families.model import verdict
from tpconform.families.model.case import HANDED_IN, OFFERED_BY, ModelCase
from tpconform.families.model.diagnosis import likely_cause
from tpconform.families.model.strategy import DTYPES, model_anchors, model_cases
from tpconform.spec.family import Property


class ModelFamily(ExtensionFamily):
    name = "model"
    title = "a tiny whole model parallelised by the impl's plan, tp_plan or builder"
    case_type = ModelCase
    offered_by = OFFERED_BY
    verdict = verdict
    example_share = 0.1
    properties = {name: Property(name, fn, self_reported=name in verdict.SELF_REPORTED,
                                 reads_backward=name not in verdict.FORWARD)
                  for name, fn in verdict.MODEL_SPEC.items()}
    derived_facts = ("expressible",)

    def variants(self):
        return HANDED_IN

    def variant_of(self, case: ModelCase) -> str:
        return case.handed_in

    def facts(self, case: ModelCase) -> dict:
        return {**super().facts(case), "expressible": case.expressible}

    def _dtypes(self, suite) -> list[str]:
        return [d for d in suite._dtypes(self.name) if d in DTYPES]

    def not_applicable(self, suite, variant, prop: str) -> Optional[str]:
        if not self._dtypes(suite) and suite._dtypes(self.name):
            return f"the model's error bound is derived for {list(DTYPES)} only, none of them in this run"
        return super().not_applicable(suite, variant, prop)

    def cases(self, suite, variant):
        return model_cases(variant or "plan", world_sizes=suite.world_sizes,
                           dtypes=self._dtypes(suite) or list(DTYPES))

    def anchors(self, suite, variant):
        return model_anchors(variant or "plan", world_sizes=suite.world_sizes,
                             dtypes=self._dtypes(suite) or list(DTYPES))

    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = ModelFamily()
