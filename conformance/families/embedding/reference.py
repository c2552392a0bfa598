"""The reference's vocab-parallel embedding (``impl.vocab_parallel_embedding``, declared in
``tpconform.impls.protocol``), composed into ``tpconform.impls.reference.ReferenceImpl``."""

from __future__ import annotations

from tpconform.impls.vocab_parallel import VocabParallelEmbedding


class Reference:
    def vocab_parallel_embedding(self, weight, *, group):
        return VocabParallelEmbedding(weight, group=group)
