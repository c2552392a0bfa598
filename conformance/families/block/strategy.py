"""The block family's Hypothesis strategy: small Llama-style configs, shrinking towards one rank, one
token, one head and the smallest widths."""

from __future__ import annotations

import math
from typing import Sequence

from hypothesis import strategies as st
from tpconform.families.block.case import BlockCase

__all__ = ["block_cases"]

# the dtypes the block's bound is derived for (bounds.py); 16-bit ones: not yet
DTYPES = ("float32", "float64")


@st.composite
def block_cases(draw, *, world_sizes: Sequence[int] = (1, 2, 3, 4), dtypes: Sequence[str] = DTYPES):
    """A block config at one of ``world_sizes``: a third of the draws shard evenly (kv heads and FFN width
    multiples of the world size), a third have fewer kv heads than ranks (all else divisible), the rest any
    counts (heads or FFN width not divisible) — configs a plan must refuse or compute right."""
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
    return BlockCase(
        world_size=ws,
        batch=draw(st.integers(1, 2), label="batch"),
        seq=draw(st.integers(1, 5), label="sequence length"),
        hidden=draw(st.integers(1, 12), label="hidden"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=draw(st.sampled_from([2, 4]), label="head_dim"),
        ffn=ffn,
        bias=draw(st.booleans(), label="bias"),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        scale=draw(st.sampled_from([1.0, 4.0]), label="input scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )
