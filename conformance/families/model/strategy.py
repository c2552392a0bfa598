"""The model family's Hypothesis strategy: tiny whole-model configs, shrinking towards one rank, one block,
untied embeddings without loss parallel or sequence parallelism, one token and the smallest widths."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.block.strategy import FLOAT16_MIN_HIDDEN, parallel_sizes, preferred_dtype
from tpconform.families.model.case import ModelCase

__all__ = ["model_anchors", "model_cases"]

# the dtypes the model's bound is derived for (bounds.py, on the block's): every dtype (16-bit ones
# accumulating in float32)
DTYPES = ("float32", "float64", "bfloat16", "float16")


@st.composite
def model_cases(draw, handed_in: str = "plan", *, world_sizes: Sequence[int] = (1, 2, 3, 4),
                dtypes: Sequence[str] = DTYPES):
    """A model config at one of ``world_sizes``, for the way in ``handed_in`` ("plan", "tp_plan" or "builder"): three
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
    dtype = draw(st.sampled_from(list(dtypes)), label="dtype")
    return ModelCase(
        world_size=ws,
        handed_in=handed_in,
        batch=batch,
        seq=seq,
        vocab=draw(st.integers(2, 11), label="vocab"),
        hidden=draw(st.integers(FLOAT16_MIN_HIDDEN if dtype == "float16" else 1, 8), label="hidden"),
        n_layers=draw(st.integers(1, 2), label="blocks"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=2,
        ffn=ffn,
        tied=draw(st.booleans(), label="tied embeddings"),
        loss_parallel=draw(st.booleans(), label="loss parallel"),
        bias=draw(st.booleans(), label="bias"),
        dtype=dtype,
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
        sequence_parallel=sp,
    )


def model_anchors(handed_in: str = "plan", *, world_sizes: Sequence[int] = (1, 2, 3, 4),
                  dtypes: Sequence[str] = DTYPES) -> list[ModelCase]:
    """The configs every search of ``handed_in`` meets first, whatever its draws: two a plan must express
    (heads, FFN and vocab divisible by the world size). One with tied embeddings and loss parallelism (and,
    for a plan, sequence parallelism: two tokens per rank), with biases, at the smallest world size above 1;
    one untied, without loss parallelism or biases, two blocks, at the largest. A grade's three random
    examples a variant rarely meet all of these; each is where some of the model's bugs live."""
    small, large = parallel_sizes(world_sizes)
    first = preferred_dtype(dtypes, "float32", "float64")
    second = preferred_dtype(dtypes, "float64", "float32")
    return [
        ModelCase(world_size=small, handed_in=handed_in, batch=2, seq=2 * small, vocab=3 * small, hidden=4, n_layers=1,
                  n_heads=2 * small, n_kv_heads=small, head_dim=2, ffn=2 * small, tied=True, loss_parallel=True,
                  bias=True, dtype=first, seed=311, sequence_parallel=handed_in == "plan"),
        ModelCase(world_size=large, handed_in=handed_in, batch=1, seq=3, vocab=2 * large, hidden=4, n_layers=2,
                  n_heads=large, n_kv_heads=large, head_dim=2, ffn=large, tied=False, loss_parallel=False,
                  bias=False, dtype=second, seed=312),
    ]
