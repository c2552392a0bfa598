"""Spec §1 — each rank holds its shard of the dense weight and bias."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("shards"))
