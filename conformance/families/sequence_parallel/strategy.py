"""Strategies for sequence-parallel cases: ``batch_shape[0]`` is the sequence, a multiple of the world size."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.linear.strategy import Variant, layer_cases
from tpconform.families.sequence_parallel.case import SequenceParallelCase
from tpconform.strategies.layers import DTYPES

__all__ = ["sequence_parallel_cases"]


@st.composite
def sequence_parallel_cases(draw, kind: str, *, world_sizes: Sequence[int] = tuple(range(1, 9)),
                            dtypes: Sequence[str] = DTYPES):
    """A column (sharded output) or row (sliced input) case with a sequence of ``k·world_size``."""
    variant = Variant("column", gather_output=False) if kind == "column" else Variant("row", input_is_parallel=True)
    case = draw(layer_cases(variant=variant, world_sizes=st.sampled_from(sorted(world_sizes)), dtypes=dtypes,
                            max_batch_dims=1, max_features=24))
    k = draw(st.integers(0, 3), label="sequence length / world size")
    return SequenceParallelCase.from_dict({**case.as_dict(), "batch_shape": (k * case.world_size, *case.batch_shape)})
