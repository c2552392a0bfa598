"""Strategies for vocab-parallel cross-entropy cases."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.cross_entropy.case import CrossEntropyCase
from tpconform.strategies.layers import DTYPES, batch_shapes

__all__ = ["cross_entropy_cases"]


@st.composite
def cross_entropy_cases(draw, *, world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
    """A vocabulary of 1-6 columns per rank; targets of 0-2 dims; logits of spread 1 or 30 (large enough
    that exponentials without the max subtracted lose the small terms)."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    return CrossEntropyCase(
        world_size=ws,
        vocab=ws * draw(st.integers(1, 6), label="vocab per rank"),
        batch_shape=draw(batch_shapes(max_dims=2, max_side=5), label="targets shape"),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        scale=draw(st.sampled_from([1.0, 30.0]), label="scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
