"""The reference's merged (QKV, gate-up) column layer (``impl.merged_column``, declared in
``tpconform.impls.protocol``), composed into ``tpconform.impls.reference.ReferenceImpl``."""

from __future__ import annotations

from tpconform.impls.merged import MergedColumnParallelLinear


class Reference:
    def merged_column(self, weights, biases, *, group):
        return MergedColumnParallelLinear(weights, biases, group=group)
