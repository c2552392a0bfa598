"""The block family's Hypothesis strategy: small Llama-style configs, shrinking towards one rank, one
token, one head and the smallest widths."""

from __future__ import annotations

import math
from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.block.case import BlockCase

__all__ = ["block_anchors", "block_cases"]

# the dtypes the block's bound is derived for (bounds.py): every dtype (16-bit ones accumulating in float32)
DTYPES = ("float32", "float64", "bfloat16", "float16")
# the optimizer steps between the two passes (case.STEP); AdamW in 32 and 64 bits only: a 16-bit AdamW step
# is taken on float32 master weights in practice, and in float16 its eps (1e-8) underflows to 0 (0/0 at a
# zero grad)
OPTIMIZERS = ("sgd", "adamw")
# the narrowest model width drawn in float16: narrower, a norm's input of a tiny mean square overflows the norm's
# float16 backward (rsqrt cubed past 65504) though the grad is small (the bound's "no overflow" assumption,
# docs/TOLERANCE.md); the model's strategy keeps it too
FLOAT16_MIN_HIDDEN = 4


@st.composite
def block_cases(draw, handed_in: str = "plan", *, world_sizes: Sequence[int] = (1, 2, 3, 4),
                dtypes: Sequence[str] = DTYPES):
    """A block config at one of ``world_sizes``, handed in as ``handed_in`` (``case.HANDED_IN``): a third of the draws shard evenly (kv heads and FFN width
    multiples of the world size), a third have fewer kv heads than ranks (all else divisible), the rest any
    counts (heads or FFN width not divisible) — configs a plan must refuse or compute right. Half the draws
are sequence-parallel, a quarter of those with a sequence the world size does not divide (most do)."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    shape = draw(st.sampled_from(["even", "fewer kv heads than ranks", "any counts"]), label="head and FFN counts")
    if shape == "even" or (shape == "fewer kv heads than ranks" and ws == 1):
        n_kv = ws * draw(st.integers(1, 2), label="kv heads per rank")
        ffn = ws * draw(st.integers(1, 3), label="FFN width per rank")
        n_heads = n_kv * draw(st.integers(1, 3), label="query heads per kv head")
    elif shape == "fewer kv heads than ranks":  # query heads and FFN width divisible: only the kv heads are not
        n_kv = draw(st.integers(1, ws - 1), label="kv heads")
        ffn = ws * draw(st.integers(1, 3), label="FFN width per rank")
        n_heads = math.lcm(ws, n_kv) * draw(st.integers(1, 2), label="query heads per lcm(world_size, kv heads)")
    else:
        n_kv = draw(st.integers(1, 4), label="kv heads")
        ffn = draw(st.integers(1, 8), label="FFN width")
        n_heads = n_kv * draw(st.integers(1, 3), label="query heads per kv head")
    sp = draw(st.booleans(), label="sequence parallel")
    if sp and draw(st.integers(0, 3), label="sequence shards even unless 0") > 0:
        seq = ws * draw(st.integers(1, 2), label="sequence length per rank")
    else:
        seq = draw(st.integers(1, 5), label="sequence length")
    dtype = draw(st.sampled_from(list(dtypes)), label="dtype")
    return BlockCase(
        world_size=ws,
        batch=draw(st.integers(1, 2), label="batch"),
        seq=seq,
        hidden=draw(st.integers(FLOAT16_MIN_HIDDEN if dtype == "float16" else 1, 12), label="hidden"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=draw(st.sampled_from([2, 4]), label="head_dim"),
        ffn=ffn,
        bias=draw(st.booleans(), label="bias"),
        dtype=dtype,
        scale=draw(st.sampled_from([1.0, 4.0]), label="input scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
        sequence_parallel=sp,
        optimizer=draw(st.sampled_from(OPTIMIZERS if dtype in ("float32", "float64") else OPTIMIZERS[:1]),
                       label="optimizer"),
        handed_in=handed_in,
    )


def parallel_sizes(world_sizes: Sequence[int]) -> tuple[int, int]:
    """The smallest world size above 1 and the largest (the smallest at all when none is above 1)."""
    sizes = sorted(set(int(w) for w in world_sizes))
    parallel = [w for w in sizes if w >= 2] or sizes[:1]
    return parallel[0], parallel[-1]


def preferred_dtype(dtypes: Sequence[str], *wanted: str) -> str:
    return next((d for d in wanted if d in dtypes), list(dtypes)[0])


def block_anchors(handed_in: str = "plan", *, world_sizes: Sequence[int] = (1, 2, 3, 4),
                  dtypes: Sequence[str] = DTYPES) -> list[BlockCase]:
    """The configs every search of ``handed_in`` meets first, whatever its draws: two that shard evenly, where
    a plan must compute right. One sequence-parallel (two tokens per rank, so a RoPE position, a norm grad or a
    reduce-scatter taken on the local shard shows), with biases, at the smallest world size above 1; one not,
    without biases, two query heads per kv head, AdamW's step, at the largest. Half the random draws are
    sequence-parallel too, but a grade's four examples a variant can miss it."""
    small, large = parallel_sizes(world_sizes)
    first = preferred_dtype(dtypes, "float32", "float64")
    second = preferred_dtype(dtypes, "float64", "float32")
    return [
        BlockCase(world_size=small, batch=2, seq=2 * small, hidden=4, n_heads=small, n_kv_heads=small, head_dim=2,
                  ffn=2 * small, bias=True, dtype=first, seed=301, sequence_parallel=True, handed_in=handed_in),
        BlockCase(world_size=large, batch=1, seq=3, hidden=6, n_heads=2 * large, n_kv_heads=large, head_dim=2,
                  ffn=large, bias=False, dtype=second, seed=302,
                  optimizer="adamw" if second in ("float32", "float64") else "sgd", handed_in=handed_in),
    ]
