"""The reference's ways into the model family (``impl.parallelize_model``, ``impl.model_tp_plan`` and
``impl.build_tp_model``, declared in ``case.py``), composed into ``tpconform.impls.reference.ReferenceImpl``:
the torchtitan-style DTensor plan of ``plan.py``, the same plan as HF-style style names (``tp_plan.py``), and a
Megatron-style model of the suite's own parallel layers (``tpconform.impls.tp_model``)."""

from __future__ import annotations

from tpconform.families.model.plan import parallelize_model
from tpconform.families.model.tp_plan import reference_tp_plan
from tpconform.impls.tp_model import build_tp_model


class Reference:
    def parallelize_model(self, model, group):
        return parallelize_model(model, group)

    def model_tp_plan(self, model):
        return reference_tp_plan(model.config)

    def build_tp_model(self, model, group):
        return build_tp_model(model, group)
