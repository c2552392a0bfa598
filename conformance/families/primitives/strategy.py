"""Strategies for the collective primitives on their own: odd and empty shapes, any memory layout."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.primitives.case import LAYOUTS, PrimitiveCase
from tpconform.strategies.layers import DTYPES, features

__all__ = ["primitive_cases"]


@st.composite
def primitive_cases(draw, primitive: str, *, world_sizes: Sequence[int] = tuple(range(1, 9)),
                    dtypes: Sequence[str] = DTYPES, uneven: bool = True, max_side: int = 7) -> PrimitiveCase:
    """A :class:`PrimitiveCase`: 1–3 dims, sides 0..``max_side`` (odd ones included); the last dim of
    a ``scatter_to`` input is split over the ranks (a multiple of the world size if ``uneven=False``)."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    lead = draw(st.lists(st.integers(0, max_side), min_size=0, max_size=2), label="leading dims")
    last = draw(features(ws, max_value=2 * max_side, uneven=uneven) if primitive == "scatter_to"
                else st.integers(0, max_side), label="last dim")
    return PrimitiveCase(
        world_size=ws,
        primitive=primitive,
        shape=(*lead, last),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        layout=draw(st.sampled_from(LAYOUTS), label="layout"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
