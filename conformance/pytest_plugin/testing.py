"""The glue that makes a property test read like its spec line::

    @for_every_variant
    def test_output_matches_the_dense_layer(tp_suite, variant, data):
        tp_suite.check(draw_case(data, tp_suite, variant), "output_matches_the_dense_layer")

and that makes the tests of every other family from the family itself (:func:`family_tests`): one
test per property, parametrized over the family's variants, so one symptom never hides another.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tpconform.engine import profiles
from tpconform.families.registry import families
from tpconform.strategies import VARIANTS


def judges(family: str, prop: str):
    """Mark a test as the check of ``prop`` of ``family`` (the plugin skips what does not apply)."""
    return pytest.mark.tp_property(family, prop)


def for_every_variant(test):
    """Run ``test`` for each layer variant, on Hypothesis-generated cases, under the active profile."""
    test = given(data=st.data())(test)
    test = settings(profiles.active())(test)
    test = judges("linear", test.__name__.removeprefix("test_"))(test)
    return pytest.mark.parametrize("variant", VARIANTS, ids=str)(test)


def draw_case(data, suite, variant, family: str = "linear"):
    return data.draw(suite.cases(variant, family), label="case")


def property_test(family: str, prop: str):
    """The test of one property of ``family``: for each of its variants, Hypothesis-generated cases."""
    fam = families()[family]

    def test(tp_suite, variant, data):
        tp_suite.check(draw_case(data, tp_suite, variant, family), prop)

    test.__name__ = test.__qualname__ = fam.test_name(prop)
    test.__doc__ = f"{fam.title}: {fam.properties[prop].doc}"
    active = profiles.active()
    budget = max(3, round(active.max_examples * fam.example_share))
    test = settings(active, max_examples=budget)(given(data=st.data())(test))
    test = judges(family, prop)(test)
    return pytest.mark.parametrize("variant", fam.variants(), ids=lambda v: "any" if v is None else str(v))(test)


def family_tests(skip: tuple[str, ...] = ("linear",)) -> dict:
    """``{test name: test}`` for every property of every family but ``skip`` (whose tests are written out)."""
    return {fam.test_name(prop): property_test(name, prop)
            for name, fam in families().items() if name not in skip for prop in fam.properties}
