"""The property tests, made from the families themselves: one test per property, parametrized over its
family's variants (so one symptom never hides another), each drawing Hypothesis-generated cases. Every
family's tests are made the same way; each module of ``tests/properties`` holds those whose
``Family.test_module`` names it (the single layer's by section of its spec, every other family's in
``test_families.py``)::

    globals().update(family_tests("forward"))   # tests/properties/test_forward.py
"""

from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tpconform.engine import profiles
from tpconform.families.registry import families


def judges(family: str, prop: str):
    """Mark a test as the check of ``prop`` of ``family`` (the plugin skips what does not apply)."""
    return pytest.mark.tp_property(family, prop)


def draw_case(data, suite, variant, family: Optional[str] = None):
    """A case of ``family`` (the primary family's when ``None``) for ``variant``, drawn as ``case``."""
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


def family_tests(module: str) -> dict:
    """``{test name: test}`` for every property of every family whose test module is ``module``
    (``Family.test_module``)."""
    return {fam.test_name(prop): property_test(name, prop)
            for name, fam in families().items() for prop in fam.properties if fam.test_module(prop) == module}
