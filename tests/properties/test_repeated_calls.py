"""Spec §9 — a layer keeps no state from one call into the next."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("repeated_calls"))
