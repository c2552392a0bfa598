"""The reference's block plan (``impl.parallelize_block``, declared in ``case.py``), composed into
``tpconform.impls.reference.ReferenceImpl``: the torchtitan-style DTensor plan of ``plan.py``."""

from __future__ import annotations

from tpconform.families.block.plan import parallelize_block


class Reference:
    def parallelize_block(self, block, group):
        return parallelize_block(block, group)
