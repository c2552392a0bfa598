"""Spec §10 — tensor parallelism communicates activations, never the weight, and never less than it must;
§13 — the same, measured outside the candidate (only in the grading sandbox: skipped here)."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("communication"))
