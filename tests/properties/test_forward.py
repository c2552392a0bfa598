"""Spec §2–4 — the forward pass computes what ``nn.Linear`` computes, on every rank."""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("forward"))
