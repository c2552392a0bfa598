"""Spec §5–7 — backward, with a random upstream gradient, gives the dense gradients."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("gradients"))
