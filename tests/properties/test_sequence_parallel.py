"""Sequence parallelism — the sequence dim sharded too (an impl offers it via
``column_sequence_parallel`` / ``row_sequence_parallel``): outputs and grads are the dense layer's,
sliced along the sequence or the features as each side of the layer is sharded, and the row
layer's bias grad is reduced over the ranks."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.families.sequence_parallel import verdict as sequence_parallel
from conformance.pytest_plugin import profiles


@pytest.mark.parametrize("kind", ["column", "row"])
@settings(profiles.active())
@given(data=st.data())
def test_sequence_parallel_matches_the_dense_layer(tp_suite, kind, data):
    """Column: sequence shard in, its features of the whole sequence out (all-gather / reduce-scatter).
    Row: its features of the whole sequence in, its sequence shard out (reduce-scatter / all-gather)."""
    case = data.draw(sequence_parallel.cases(tp_suite, kind), label="case")
    sequence_parallel.check(tp_suite, case, list(sequence_parallel.SP_SPEC))
