"""The vocab-parallel embedding as a family (the spec: ``verdict``)."""

from __future__ import annotations

import math

from tpconform.families.common import ExtensionFamily
from tpconform.families.embedding import verdict
from tpconform.families.embedding.case import EmbeddingCase
from tpconform.families.embedding.diagnosis import likely_cause
from tpconform.families.embedding.strategy import embedding_cases
from tpconform.spec.family import Property
from tpconform.spec.partition import chunk_leaves_a_rank_empty


class EmbeddingFamily(ExtensionFamily):
    name = "embedding"
    title = "the vocab-parallel embedding"
    case_type = EmbeddingCase
    offered_by = "vocab_parallel_embedding"
    verdict = verdict
    derived_facts = ("chunk_leaves_a_rank_empty", "ids_numel")
    properties = {name: Property(name, fn, reads_backward=name != "embedding_output_matches_the_dense_lookup")
                  for name, fn in verdict.EMBEDDING_SPEC.items()}

    def cases(self, suite, variant):
        return embedding_cases(world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name))

    def facts(self, case: EmbeddingCase) -> dict:
        """The case's fields, and whether ``torch.chunk``'s split of the vocabulary (``ceil(vocab / world_size)``
        rows a rank, the last ranks what is left: DTensor's ``Shard(0)``) leaves some rank no row (vocab 9 on 4
        ranks: 3, 3, 3, 0), and how many ids it looks up (``ids_numel``), for known-failure ``when``s."""
        return {**super().facts(case), "chunk_leaves_a_rank_empty": chunk_leaves_a_rank_empty(case.vocab, case.world_size),
                "ids_numel": math.prod(case.batch_shape)}

    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = EmbeddingFamily()
