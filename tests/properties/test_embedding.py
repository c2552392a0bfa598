"""Vocab-parallel embedding (an impl offers it via ``vocab_parallel_embedding``): the table's rows
sharded over the ranks, ids outside a rank's rows masked, partial lookups all-reduced — every rank
returns the dense lookup, and each table shard gets its rows of the dense grad."""

from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.families.embedding import verdict as embedding
from conformance.pytest_plugin import profiles


@settings(profiles.active())
@given(data=st.data())
def test_embedding_matches_the_dense_lookup(tp_suite, data):
    """Output and table-shard grads equal the dense embedding's, for ids anywhere in the vocabulary."""
    case = data.draw(embedding.cases(tp_suite), label="case")
    embedding.check(tp_suite, case, list(embedding.EMBEDDING_SPEC))
