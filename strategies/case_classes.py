"""The classes of layer cases a bug can hide in, and a short list of cases that meets every one.

A random budget of 15 examples per property can miss a whole class — every non-divisible case, every
empty batch, every transposed input — so each property also runs :func:`covering_cases`, which
meet every class that applies at least once, and the suite reports which classes each property met
(:func:`classes_of` of every case it judged).

The classes: the split dim ``divisible`` by the world size, ``non-divisible``, or ``fewer features
than ranks`` (some rank holds an empty shard); an ``empty batch``; a ``1-D``, ``2-D`` or ``>=3-D``
input; each memory layout (``tpconform.spec.cases.LAYOUTS``); each dtype; ``large features``
(a split dim of 64 or more: a layer that ignores features past 32 fails there); ``bias`` and
``no bias``; ``world size >= 3`` (where the middle ranks' slices differ from both ends').
"""

from __future__ import annotations

import math
from typing import Sequence

from tpconform.spec.cases import LAYOUTS, LayerCase, layouts_for
from tpconform.strategies.layers import Variant

LARGE = 64


def classes_of(case: LayerCase) -> set[str]:
    """The classes ``case`` belongs to."""
    ws = case.tp_size or case.world_size
    split = case.sharding.split_features(case)
    out = {f"dtype {case.dtype}", f"layout {case.layout}", "bias" if case.bias else "no bias"}
    out.add("fewer features than ranks" if split < ws else "divisible" if split % ws == 0 else "non-divisible")
    out.add({0: "1-D input", 1: "2-D input"}.get(len(case.batch_shape), ">=3-D input"))
    if math.prod(case.batch_shape) == 0 and case.batch_shape:
        out.add("empty batch")
    if split >= LARGE:
        out.add("large features")
    if ws >= 3:
        out.add("world size >= 3")
    return out


def applicable_classes(world_sizes: Sequence[int], dtypes: Sequence[str]) -> set[str]:
    """Every class a run over ``world_sizes`` and ``dtypes`` can meet."""
    top = max(world_sizes)
    out = {f"dtype {d}" for d in dtypes} | {f"layout {name}" for name in LAYOUTS}
    out |= {"bias", "no bias", "divisible", "1-D input", "2-D input", ">=3-D input", "empty batch", "large features"}
    if top >= 2:
        out |= {"non-divisible", "fewer features than ranks"} if top >= 2 else set()
    if top >= 3:
        out.add("world size >= 3")
    return out


def covering_cases(variant: Variant, world_sizes: Sequence[int], dtypes: Sequence[str]) -> list[LayerCase]:
    """Ten cases that together meet every class :func:`applicable_classes` lists for this run (and
    the places where seeded bugs hide: the last one is a bias split unlike its weight, and a
    non-contiguous input grad)."""
    sizes = sorted(set(world_sizes))
    big = sizes[-1]
    two = next((w for w in sizes if w >= 2), big)
    three = next((w for w in sizes if w >= 3), big)
    # (world size, split dim, other dim, batch shape, layout, bias)
    plan = [
        (two, 2 * two, 5, (3,), "contiguous", True),  # divisible, 2-D
        (three, 2 * three + 1, 4, (2, 3), "transposed", False),  # non-divisible, >=3-D, no bias
        (big, max(big - 1, 1), 3, (), "contiguous", True),  # fewer features than ranks, 1-D
        (two, 2 * two, 3, (0, 3), "batch_permuted", True),  # empty batch
        (three, LARGE * three + 2 * three, 70, (2,), "strided", True),  # large features
        (two, 3 * two, 2, (2, 1, 3), "narrowed", False),
        (three, 3 * three, 3, (3,), "offset", True),
        (two, 2 * two + 1, 3, (3, 2), "expanded", True),
        (big, 2 * big, 2, (2, 2), "batch_permuted", False),
        # non-divisible with a bias (at 3 ranks chunk- and tensor_split-style splits differ: 3,3,1 / 3,2,2), a 2-D
        # transposed input (autograd keeps its layout in the input grad: a non-contiguous tensor reaches the all-reduce)
        (three, 2 * three + 1, 4, (3,), "transposed", True),
    ]
    out = []
    for i, (ws, split, other, batch, layout, bias) in enumerate(plan):
        if layout not in layouts_for(len(batch)):
            layout = "contiguous"
        column = variant.kind == "column"
        out.append(LayerCase(kind=variant.kind, world_size=ws,
                             in_features=other if column else split, out_features=split if column else other,
                             batch_shape=batch, dtype=dtypes[i % len(dtypes)], bias=bias,
                             gather_output=variant.gather_output, input_is_parallel=variant.input_is_parallel,
                             layout=layout, seed=301 + i))
    return out
