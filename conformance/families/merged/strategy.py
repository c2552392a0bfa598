"""Strategies for merged column layers (QKV, gate-up): 2–3 blocks, each a multiple of the world size."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.merged.case import MergedCase
from tpconform.strategies.layers import DTYPES, batch_shapes, scales

__all__ = ["merged_cases"]


@st.composite
def merged_cases(draw, *, world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES,
                 equal_blocks: bool = False):
    """Blocks of different sizes too (grouped-query attention's smaller K and V), unless ``equal_blocks``
    (a packed or strided layout, which can only express blocks of one size: capability ``equal_blocks``);
    either way the blocks shrink towards 2 blocks of ``world_size`` rows."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    dtype = draw(st.sampled_from(list(dtypes)), label="dtype")
    if equal_blocks:
        count, size = draw(st.integers(2, 3), label="blocks"), draw(st.integers(1, 3), label="block size / ws")
        per_rank = [size] * count
    else:
        per_rank = draw(st.lists(st.integers(1, 3), min_size=2, max_size=3), label="blocks / ws")
    return MergedCase(
        world_size=ws,
        in_features=draw(st.integers(1, 16), label="in_features"),
        blocks=tuple(k * ws for k in per_rank),
        batch_shape=draw(batch_shapes(max_dims=2, max_side=4), label="batch_shape"),
        dtype=dtype,
        bias=draw(st.booleans(), label="bias"),
        noncontiguous=draw(st.booleans(), label="noncontiguous"),
        scale=draw(scales(dtype), label="scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
