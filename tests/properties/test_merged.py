"""Merged column layers — QKV, gate-up (an impl offers them via ``merged_column``): each output
block is sharded on its own, so every rank holds its slice of every block and returns those
columns of the dense output, with the dense grads."""

from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.families.merged import verdict as merged
from conformance.pytest_plugin import profiles


@settings(profiles.active())
@given(data=st.data())
def test_merged_column_matches_the_dense_blocks(tp_suite, data):
    """Shards are per-block slices in block order; output, input, weight and bias grads are the dense ones."""
    case = data.draw(merged.cases(tp_suite), label="case")
    merged.check(tp_suite, case, list(merged.MERGED_SPEC))
