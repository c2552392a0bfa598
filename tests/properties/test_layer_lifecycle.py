"""Spec §13-16 — the layer as built, reloaded from a checkpoint, converted to another dtype, and trained in mixed precision."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("layer_lifecycle"))
