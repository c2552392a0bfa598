"""Likely causes of a violation in one TP group: the single layer's recognisers, run on that group's
own evidence (each group's example reads like a single-group one)."""

from __future__ import annotations

from typing import Optional

from tpconform.families.linear.diagnosis import likely_cause as layer_likely_cause
from tpconform.spec.violations import Violation


def likely_cause(ev, v: Violation) -> Optional[str]:
    """``v`` carries its group and the group's own violation (``SubgroupsFamily.judge``); an example that
    did not complete (``v.where`` is ``None``: the grader asks why it crashed or hung) reads as the first
    group's."""
    if not isinstance(v.where, tuple):
        return layer_likely_cause(ev.groups[0], v) if ev.groups else None
    g, original = v.where
    return layer_likely_cause(ev.groups[g], original)
