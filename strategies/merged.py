"""Strategies for merged column layers (QKV, gate-up): 2–3 blocks, each a multiple of the world size."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.merged.case import MergedCase
from tpconform.strategies.layers import DTYPES, batch_shapes, scales


@st.composite
def merged_cases(draw, *, world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
    """Blocks of different sizes too (grouped-query attention's smaller K and V)."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    dtype = draw(st.sampled_from(list(dtypes)), label="dtype")
    return MergedCase(
        world_size=ws,
        in_features=draw(st.integers(1, 16), label="in_features"),
        blocks=tuple(k * ws for k in draw(st.lists(st.integers(1, 3), min_size=2, max_size=3), label="blocks / ws")),
        batch_shape=draw(batch_shapes(max_dims=2, max_side=4), label="batch_shape"),
        dtype=dtype,
        bias=draw(st.booleans(), label="bias"),
        noncontiguous=draw(st.booleans(), label="noncontiguous"),
        scale=draw(scales(dtype), label="scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
