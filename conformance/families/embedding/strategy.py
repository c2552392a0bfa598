"""Strategies for vocab-parallel embedding cases."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.embedding.case import EmbeddingCase
from tpconform.strategies.layers import DTYPES, batch_shapes, features

__all__ = ["embedding_cases"]


@st.composite
def embedding_cases(draw, *, world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
    """A vocabulary smaller than, divisible by, or not divisible by the world size; ids of 0–2 dims."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    return EmbeddingCase(
        world_size=ws,
        vocab=draw(features(ws, max_value=24), label="vocab"),
        dim=draw(st.integers(1, 8), label="dim"),
        batch_shape=draw(batch_shapes(max_dims=2, max_side=5), label="ids shape"),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
