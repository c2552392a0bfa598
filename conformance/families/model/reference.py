"""The reference's model plans (``impl.parallelize_model`` and ``impl.model_tp_plan``, declared in
``case.py``), composed into ``tpconform.impls.reference.ReferenceImpl``: the torchtitan-style DTensor plan
of ``plan.py`` and the same plan as HF-style style names (``tp_plan.py``)."""

from __future__ import annotations

from tpconform.families.model.plan import parallelize_model
from tpconform.families.model.tp_plan import reference_tp_plan


class Reference:
    def parallelize_model(self, model, group):
        return parallelize_model(model, group)

    def model_tp_plan(self, model):
        return reference_tp_plan(model.config)
