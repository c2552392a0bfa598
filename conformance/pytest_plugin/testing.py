"""The glue that makes a property test read like its spec line::

    @for_every_variant
    def test_output_matches_the_dense_layer(tp_suite, variant, data):
        tp_suite.check(draw_case(data, tp_suite, variant), "output_matches_the_dense_layer")
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.pytest_plugin import profiles
from strategies import VARIANTS


def for_every_variant(test):
    """Run ``test`` for each layer variant, on Hypothesis-generated cases, under the active profile."""
    test = given(data=st.data())(test)
    test = settings(profiles.active())(test)
    return pytest.mark.parametrize("variant", VARIANTS, ids=str)(test)


def draw_case(data, suite, variant):
    return data.draw(suite.cases(variant), label="case")
