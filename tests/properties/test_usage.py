"""Spec §12 — the layer as training loops use it, each protocol on a fresh layer."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("usage"))
