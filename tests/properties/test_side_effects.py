"""Spec §8 — the layer leaves what it was given alone."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("side_effects"))
