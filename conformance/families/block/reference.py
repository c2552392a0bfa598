"""The reference's two ways to hand in the block (declared in ``case.py``), composed into
``tpconform.impls.reference.ReferenceImpl``: ``parallelize_block``, the torchtitan-style DTensor plan of
``plan.py``; ``build_tp_block``, a Megatron-style block of the suite's own parallel layers
(``tpconform.impls.tp_block``) with its name map."""

from __future__ import annotations

from tpconform.families.block.plan import parallelize_block
from tpconform.impls.tp_block import build_tp_block


class Reference:
    def parallelize_block(self, block, group):
        return parallelize_block(block, group)

    def build_tp_block(self, block, group):
        return build_tp_block(block, group)
