"""Strategies for tensor-parallel MLP cases (column → activation → row)."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.mlp.case import ACTIVATIONS, MLPCase
from tpconform.strategies.layers import DTYPES, batch_shapes, features, scales

__all__ = ["mlp_cases"]


@st.composite
def mlp_cases(draw, *, world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES,
              uneven: bool = True, max_features: int = 24) -> MLPCase:
    """An :class:`MLPCase`: the hidden width is split over the ranks (smaller than, divisible by,
    or not divisible by the world size unless ``uneven=False``); the model width is free."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    dtype = draw(st.sampled_from(list(dtypes)), label="dtype")
    return MLPCase(
        world_size=ws,
        in_features=draw(st.integers(1, max_features), label="in_features"),
        hidden=draw(features(ws, max_value=max_features, uneven=uneven), label="hidden"),
        batch_shape=draw(batch_shapes(max_dims=2, max_side=4), label="batch_shape"),
        dtype=dtype,
        bias=draw(st.booleans(), label="bias"),
        activation=draw(st.sampled_from(ACTIVATIONS), label="activation"),
        noncontiguous=draw(st.booleans(), label="noncontiguous"),
        scale=draw(scales(dtype), label="scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
