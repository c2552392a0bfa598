"""The reference's vocab-parallel cross entropy (``impl.vocab_parallel_cross_entropy``, declared in
``tpconform.impls.protocol``), composed into ``tpconform.impls.reference.ReferenceImpl``."""

from __future__ import annotations

from tpconform.impls.cross_entropy import vocab_parallel_cross_entropy


class Reference:
    def vocab_parallel_cross_entropy(self, group):
        return vocab_parallel_cross_entropy(group)
