"""Strategies for cases whose world is split into several independent TP groups."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from hypothesis import strategies as st
from tpconform.families.linear.strategy import Variant, layer_cases
from tpconform.strategies.layers import DTYPES

__all__ = ["tp_layouts", "tp_group_cases"]

# (tp_size, groups): world 4 as two TP groups of 2; world 6 as three groups of 2 and two of 3
LAYOUTS = ((2, 2), (2, 3), (3, 2))


def tp_layouts(allowed_world_sizes: Optional[Sequence[int]] = None) -> list[tuple[int, int]]:
    """The layouts whose world size is allowed (all of :data:`LAYOUTS` when ``None``)."""
    return [(t, g) for t, g in LAYOUTS if allowed_world_sizes is None or t * g in allowed_world_sizes]


@st.composite
def tp_group_cases(draw, variant: Variant, *, layouts: Sequence[tuple[int, int]] = LAYOUTS,
                   dtypes: Sequence[str] = DTYPES, **layer_kw):
    """A :class:`LayerCase` for ``variant`` on ``tp_size × groups`` ranks, ``tp_size`` set."""
    tp_size, groups = draw(st.sampled_from(list(layouts)), label="tp_size, groups")
    case = draw(layer_cases(variant=variant, world_sizes=st.just(tp_size), dtypes=dtypes, **layer_kw))
    return dataclasses.replace(case, world_size=tp_size * groups, tp_size=tp_size)
