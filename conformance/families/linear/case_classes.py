"""The classes of layer cases a bug can hide in, their pairs, and a short list of cases that meets
every class and every pair.

A random budget of 15 examples per property can miss a whole class — every non-divisible case, every
empty batch, every transposed input — and a bug can need two classes at once (a column layer's
input-grad all-reduce that drops a non-contiguous grad shows only for a 2-D transposed input at world
size >= 2: each class alone is met by cases that pass). So each property also runs
:func:`covering_cases`, and the suite reports which classes and which pairs of classes each
property met (:func:`classes_of`, :func:`pairs_met` of every case it judged).

The dimensions (:func:`dimensions`; each case has one value of each, simplest first): the variant;
the world size (2, or >= 3, where the middle ranks' slices differ from both ends'); the split dim
``divisible`` by the world size, ``non-divisible``, or ``fewer features than ranks`` (some rank
holds an empty shard); a ``1-D``, ``2-D`` or ``>=3-D`` input; an empty or non-empty batch; each
memory layout (``tpconform.families.linear.case.LAYOUTS``); each dtype; the input's scale; bias or no bias.
Their pairs are what :func:`covering_cases` meets with an all-pairs generator (``pairwise.py``);
world size 1 is left to the random draws, so every covering case is parallel.

Besides them, classes no pair needs, each met by one covering case of its own (:func:`tile_tail_cases`):
``large features`` (a split dim of 64 or more) and the tile tails — per-shard in features, per-shard
out features and batch rows past 32, 64 and 128 with a partial tile left over (more than N, not a
multiple of N), where a kernel or chunked collective that drops its last partial tile goes wrong.
The random draws stay small (features <= 32, at most 64 rows), so shrinking still ends at simple cases.
And ``3+ micro-batches`` (the usage protocols' forwards before their backwards: a third one overwrites
what a module keeps in two slots), met by every other pairwise case.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

from tpconform.families.linear.case import LAYOUTS, LayerCase, layouts_for
from tpconform.families.linear.strategy import VARIANTS, Variant
from tpconform.spec.family import CaseClasses
from tpconform.strategies.pairwise import Pair, Row, all_pairs, allowed_pairs, pairs_of, placeable

LARGE = 64
MICRO_BATCHES = "3+ micro-batches"
TILES = (32, 64, 128)
TAILS = {32: 40, 64: 100, 128: 150}  # past each tile, below the next, with a partial tile left over
SCALES = {1.0: "scale 1", 2.0**-6: "scale 2^-6", 2.0**6: "scale 2^6"}  # strategies.layers.scales' values
_BATCH_DIMS = {"1-D input": 0, "2-D input": 1, ">=3-D input": 2}
# pairs no case can hold: a layout its input has too few batch dims for, an empty 1-D input (it has
# no batch), float16 scaled up (a sum could overflow), a stride-0 layout of an empty batch (nothing
# to expand), and at world size 1 a split dim that is not divisible
_FORBIDDEN = {frozenset((f"layout {name}", rank)) for rank, dims in _BATCH_DIMS.items()
              for name in LAYOUTS if name not in layouts_for(dims)} | {
    frozenset(("empty batch", "1-D input")), frozenset(("dtype float16", "scale 2^6")),
    frozenset(("empty batch", "layout expanded")),
    frozenset(("world size 1", "non-divisible")), frozenset(("world size 1", "fewer features than ranks"))}
DIMENSION_ORDER = ("variant", "world size", "split", "input", "batch", "layout", "dtype", "scale", "bias")


def _world_size_class(ws: int) -> str:
    return "world size 1" if ws == 1 else "world size 2" if ws == 2 else "world size >= 3"


def _per_shard(case: LayerCase) -> tuple[int, int]:
    """The largest rank's (in, out) features: the split dim's widest shard, the other dim whole."""
    ws = case.tp_size or case.world_size
    if case.kind == "column":
        return case.in_features, -(-case.out_features // ws)
    return -(-case.in_features // ws), case.out_features


def values_of(case: LayerCase) -> Row:
    """``case``'s value of each dimension (:func:`dimensions`)."""
    ws = case.tp_size or case.world_size
    split = case.sharding.split_features(case)
    return {
        "variant": str(Variant(case.kind, case.gather_output, case.input_is_parallel)),
        "world size": _world_size_class(ws),
        "split": "fewer features than ranks" if split < ws else "divisible" if split % ws == 0 else "non-divisible",
        "input": {0: "1-D input", 1: "2-D input"}.get(len(case.batch_shape), ">=3-D input"),
        "batch": "empty batch" if case.batch_shape and math.prod(case.batch_shape) == 0 else "non-empty batch",
        "layout": f"layout {case.layout}",
        "dtype": f"dtype {case.dtype}",
        "scale": SCALES.get(case.scale, f"scale {case.scale}"),
        "bias": "bias" if case.bias else "no bias",
    }


def classes_of(case: LayerCase) -> set[str]:
    """The classes ``case`` belongs to: its value of each dimension, large features, its tile tails."""
    out = set(values_of(case).values())
    if case.sharding.split_features(case) >= LARGE:
        out.add("large features")
    per_in, per_out = _per_shard(case)
    if case.micro_batches >= 3:
        out.add(MICRO_BATCHES)
    for what, n in (("per-shard in features", per_in), ("per-shard out features", per_out),
                    ("batch rows", math.prod(case.batch_shape))):
        out |= {f"{what} past {tile}" for tile in TILES if n > tile and n % tile}
    return out


def pairs_met(case: LayerCase) -> set[Pair]:
    """The pairs of dimension values ``case`` meets."""
    return pairs_of(values_of(case), DIMENSION_ORDER)


def dimensions(world_sizes: Sequence[int], dtypes: Sequence[str],
               variants: Sequence[str] = tuple(map(str, VARIANTS))) -> dict[str, tuple[str, ...]]:
    """Each dimension's values a run over ``world_sizes``, ``dtypes`` and ``variants`` can meet, simplest first."""
    sizes = set(world_sizes)
    ws = tuple(c for c, ok in (("world size 2", 2 in sizes), ("world size >= 3", max(sizes) >= 3)) if ok)
    return placeable({
        "variant": tuple(variants),
        "world size": ws or ("world size 1",),
        "split": ("divisible", "non-divisible", "fewer features than ranks") if ws else ("divisible",),
        "input": ("2-D input", "1-D input", ">=3-D input"),
        "batch": ("non-empty batch", "empty batch"),
        "layout": tuple(f"layout {name}" for name in LAYOUTS),
        "dtype": tuple(f"dtype {d}" for d in dtypes),
        "scale": tuple(SCALES.values()),
        "bias": ("bias", "no bias"),
    }, allowed)  # float16 alone: no dtype a scale of 2^6 may sit beside, so that scale is no class of the run


def allowed(row: Row) -> bool:
    """Whether a case can hold these dimension values together."""
    values = list(row.values())
    return not any(frozenset((a, b)) in _FORBIDDEN for i, a in enumerate(values) for b in values[i + 1:])


TILE_CLASSES = {f"{what} past {tile}" for what in ("per-shard in features", "per-shard out features", "batch rows")
                for tile in TILES}


def applicable_classes(world_sizes: Sequence[int], dtypes: Sequence[str],
                       variants: Sequence[str] = tuple(map(str, VARIANTS))) -> set[str]:
    """Every class a run over ``world_sizes``, ``dtypes`` and ``variants`` can meet."""
    dims = dimensions(world_sizes, dtypes, variants)
    return {v for values in dims.values() for v in values} | {"large features", MICRO_BATCHES} | TILE_CLASSES


def applicable_pairs(world_sizes: Sequence[int], dtypes: Sequence[str],
                     variants: Sequence[str] = tuple(map(str, VARIANTS))) -> set[Pair]:
    """Every pair of dimension values a run over ``world_sizes``, ``dtypes`` and ``variants`` can meet."""
    return allowed_pairs(dimensions(world_sizes, dtypes, variants), allowed)


def _layer_case(variant: Variant, ws: int, split: int, other: int, batch: tuple[int, ...], **kw) -> LayerCase:
    column = variant.kind == "column"
    return LayerCase(kind=variant.kind, world_size=ws, in_features=other if column else split,
                     out_features=split if column else other, batch_shape=batch,
                     gather_output=variant.gather_output, input_is_parallel=variant.input_is_parallel, **kw)


def pairwise_cases(variant: Variant, world_sizes: Sequence[int], dtypes: Sequence[str]) -> list[LayerCase]:
    """Small cases of ``variant`` that together meet every allowed pair of dimension values of this run
    (at the smallest world sizes of each class: 2, and the smallest of 3 or more)."""
    sizes = sorted(set(world_sizes))
    size_of = {"world size 1": 1, "world size 2": 2, "world size >= 3": next((w for w in sizes if w >= 3), 0)}
    scale_of = {label: value for value, label in SCALES.items()}
    out = []
    for i, row in enumerate(all_pairs(dimensions(sizes, dtypes, (str(variant),)), allowed)):
        ws = size_of[row["world size"]]
        split = {"divisible": 2 * ws, "non-divisible": 2 * ws + 1, "fewer features than ranks": ws - 1}[row["split"]]
        batch = {"1-D input": (), "2-D input": (3,), ">=3-D input": (2, 3)}[row["input"]]
        if row["batch"] == "empty batch":
            batch = (*batch[:-1], 0)
        layout = row["layout"].removeprefix("layout ")
        assert layout in layouts_for(len(batch)), row  # _FORBIDDEN keeps every layout meaningful
        out.append(_layer_case(variant, ws, split, 3, batch, dtype=row["dtype"].removeprefix("dtype "),
                               bias=row["bias"] == "bias", layout=layout, scale=scale_of[row["scale"]],
                               seed=301 + i, micro_batches=2 + i % 2))
    return out


def tile_tail_cases(variant: Variant, world_sizes: Sequence[int], dtypes: Sequence[str]) -> list[LayerCase]:
    """One case per tile-tail class: batch rows, per-shard in features and per-shard out features of
    :data:`TAILS` (past each tile of :data:`TILES`; a split dim past a tile is also ``large features``)."""
    sizes = sorted(set(world_sizes))
    ws = next((w for w in sizes if w >= 2), sizes[-1])
    column = variant.kind == "column"
    plan = []  # (split dim, other dim, batch shape): a per-shard split dim n is n * ws in all
    for n in TAILS.values():
        plan.append((2 * ws, 3, (n,)))  # batch rows
        plan.append((2 * ws, n, (3,)) if column else (n * ws, 3, (3,)))  # per-shard in features
        plan.append((n * ws, 3, (3,)) if column else (2 * ws, n, (3,)))  # per-shard out features
    return [_layer_case(variant, ws, split, other, batch, dtype=dtypes[i % len(dtypes)], bias=True, seed=401 + i)
            for i, (split, other, batch) in enumerate(plan)]


def split_style_case(variant: Variant, world_sizes: Sequence[int], dtypes: Sequence[str]) -> list[LayerCase]:
    """A non-divisible split with a bias where chunk- and tensor_split-style splits differ (7 rows at 3
    ranks: 3,3,1 / 3,2,2), with a 2-D transposed input: a bias split unlike its weight shows there, a
    pair of classes alone does not pin the split sizes."""
    three = next((w for w in sorted(set(world_sizes)) if w >= 3), None)
    if three is None:
        return []
    return [_layer_case(variant, three, 2 * three + 1, 4, (3,), dtype=dtypes[0], bias=True, layout="transposed",
                        seed=310)]


@functools.cache
def _covering(variant: Variant, world_sizes: tuple[int, ...], dtypes: tuple[str, ...]) -> tuple[LayerCase, ...]:
    return (*pairwise_cases(variant, world_sizes, dtypes), *tile_tail_cases(variant, world_sizes, dtypes),
            *split_style_case(variant, world_sizes, dtypes))


def covering_cases(variant: Variant, world_sizes: Sequence[int], dtypes: Sequence[str]) -> list[LayerCase]:
    """Cases that together meet every class :func:`applicable_classes` and every pair
    :func:`applicable_pairs` lists for this run: the pairwise cases, then the tile-tail cases."""
    return list(_covering(variant, tuple(sorted(set(world_sizes))), tuple(dtypes)))


# what the engine counts per property (``engine/coverage.py``; ``Family.case_classes``)
CASE_CLASSES = CaseClasses(of=classes_of, pairs_of=pairs_met, applicable=applicable_classes,
                           applicable_pairs=applicable_pairs)
