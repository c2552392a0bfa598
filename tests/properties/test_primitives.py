"""The four collective autograd functions on their own (an impl offers them via ``primitives()``):
copy-to, reduce-from, scatter-to and gather-from each do their dense forward and backward, on
odd-shaped, empty and non-contiguous inputs, and leave their inputs alone."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.families.primitives import verdict as primitives
from conformance.pytest_plugin import profiles


@pytest.mark.parametrize("primitive", primitives.PRIMITIVES)
@settings(profiles.active())
@given(data=st.data())
def test_primitive_matches_its_dense_meaning(tp_suite, primitive, data):
    """Forward and backward equal the table in ``conformance.families.primitives.verdict``; inputs are not modified."""
    case = data.draw(primitives.cases(tp_suite, primitive), label="case")
    primitives.check(tp_suite, case, list(primitives.PRIMITIVE_SPEC))
