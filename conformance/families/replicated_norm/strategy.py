"""Strategies for replicated-norm cases."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.replicated_norm.case import ReplicatedNormCase
from tpconform.strategies.layers import DTYPES, batch_shapes

__all__ = ["replicated_norm_cases"]


@st.composite
def replicated_norm_cases(draw, *, world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
    """A sequence of 0 to ``3·world_size + 2`` tokens (a multiple of the world size or not, fewer tokens than
    ranks, none), 0-1 batch dims, 1-16 hidden features, each dtype."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    return ReplicatedNormCase(
        world_size=ws,
        seq=draw(st.integers(0, 3 * ws + 2), label="sequence length"),
        batch_shape=draw(batch_shapes(max_dims=1, max_side=3), label="batch shape"),
        hidden=draw(st.integers(1, 16), label="hidden"),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
