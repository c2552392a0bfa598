"""The model family's Hypothesis strategy: tiny whole-model configs, shrinking towards one rank, one block,
untied embeddings without loss parallel or sequence parallelism, one token and the smallest widths."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.model.case import ModelCase

__all__ = ["model_cases"]

# the dtypes the model's bound is derived for (bounds.py, on the block's): every dtype (16-bit ones
# accumulating in float32)
DTYPES = ("float32", "float64", "bfloat16", "float16")


@st.composite
def model_cases(draw, handed_in: str = "plan", *, world_sizes: Sequence[int] = (1, 2, 3, 4),
                dtypes: Sequence[str] = DTYPES):
    """A model config at one of ``world_sizes``, for the way in ``handed_in`` ("plan" or "tp_plan"): three
    draws in four shard evenly (heads and FFN width multiples of the world size), the rest any counts (a plan
    must refuse them or compute right); the vocab any size from 2 to 11 (mostly not divisible). Under "plan",
    half the draws are sequence-parallel, a quarter of those with a sequence the world size does not divide."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    if draw(st.integers(0, 3), label="any head and FFN counts (0)") or ws == 1:
        n_kv = ws
        ffn = ws * draw(st.integers(1, 2), label="FFN width per rank")
        n_heads = n_kv * draw(st.integers(1, 2), label="query heads per kv head")
    else:
        n_kv = draw(st.integers(1, 3), label="kv heads")
        ffn = draw(st.integers(1, 6), label="FFN width")
        n_heads = n_kv * draw(st.integers(1, 2), label="query heads per kv head")
    batch = draw(st.integers(1, 2), label="batch")
    sp = handed_in == "plan" and draw(st.booleans(), label="sequence parallel")
    if sp and draw(st.integers(0, 3), label="sequence shards even unless 0") > 0:
        seq = ws * draw(st.integers(1, 2), label="sequence length per rank")
    else:
        seq = draw(st.integers(1, 4), label="sequence length")
    return ModelCase(
        world_size=ws,
        handed_in=handed_in,
        batch=batch,
        seq=seq,
        vocab=draw(st.integers(2, 11), label="vocab"),
        hidden=draw(st.integers(1, 8), label="hidden"),
        n_layers=draw(st.integers(1, 2), label="blocks"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=2,
        ffn=ffn,
        tied=draw(st.booleans(), label="tied embeddings"),
        loss_parallel=draw(st.booleans(), label="loss parallel"),
        bias=draw(st.booleans(), label="bias"),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
        sequence_parallel=sp,
    )
