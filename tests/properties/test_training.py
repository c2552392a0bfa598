"""Spec §11 — a training step on the shards is what the dense layer's training step is."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("training"))
