"""The sequence-parallel family's case: a layer case whose first batch dim is the sequence."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.families.linear.case import LayerCase


@dataclass(frozen=True)
class SequenceParallelCase(LayerCase):
    """A :class:`LayerCase` (column with a sharded output, or row with a sliced input) whose
    ``batch_shape[0]`` is the sequence length, a multiple of the world size."""

    def describe(self) -> str:
        return f"sequence-parallel {super().describe()} (sequence = dim 0)"
