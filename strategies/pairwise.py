"""All-pairs (pairwise) covering arrays: few rows that together meet every allowed pair of values of
every two dimensions.

A dimension is a name and its values, simplest first. :func:`all_pairs` builds rows greedily: each
new row starts from the first pair no row has met yet and gives every other dimension the value that
meets the most pairs still unmet, the simplest on a tie, so a dimension no pair needs stays at its
simplest value. ``allowed`` says whether a partial row (a dict of some dimensions' values) can be
built at all; it must judge pairs alone (a row whose pairs are all allowed is allowed). A value no
row can hold (one that some other dimension has no value allowed beside: a scale only float16 forbids,
in a run of float16 alone) is dropped first, by :func:`placeable`, from the rows and from the pairs.
"""

from __future__ import annotations

from itertools import combinations
from typing import Callable, Mapping, Sequence

Row = dict[str, str]
Pair = tuple[str, str]  # two values, each of a different dimension, in the dimensions' order


def pairs_of(row: Mapping[str, str], order: Sequence[str]) -> set[Pair]:
    """The pairs of values ``row`` meets (its dimensions taken in ``order``; others ignored)."""
    values = [row[d] for d in order if d in row]
    return set(combinations(values, 2))


def placeable(dims: Mapping[str, Sequence[str]], allowed: Callable[[Row], bool]) -> dict[str, tuple[str, ...]]:
    """``dims`` without the values no row can hold: those beside which some other dimension has no
    allowed value (dropping one can strand another, so until none is left to drop)."""
    out = {d: tuple(values) for d, values in dims.items()}
    while True:
        kept = {d: tuple(v for v in values if all(any(allowed({d: v, e: u}) for u in out[e]) for e in out if e != d))
                for d, values in out.items()}
        if kept == out:
            return out
        out = kept


def allowed_pairs(dims: Mapping[str, Sequence[str]], allowed: Callable[[Row], bool]) -> set[Pair]:
    """Every pair of values of two different dimensions that ``allowed`` lets a row hold."""
    dims = placeable(dims, allowed)
    out = set()
    for a, b in combinations(dims, 2):
        out |= {(va, vb) for va in dims[a] for vb in dims[b] if allowed({a: va, b: vb})}
    return out


def all_pairs(dims: Mapping[str, Sequence[str]], allowed: Callable[[Row], bool]) -> list[Row]:
    """Rows (``{dimension: value}``, every dimension set) that together meet every allowed pair."""
    dims = placeable(dims, allowed)
    order = list(dims)
    unmet = allowed_pairs(dims, allowed)
    dim_of = {v: d for d in order for v in dims[d]}
    if len(dim_of) != sum(len(vs) for vs in dims.values()):
        raise ValueError("a value names two dimensions' values; give each dimension its own labels")
    rows: list[Row] = []
    while unmet:
        first = min(unmet, key=lambda p: (order.index(dim_of[p[0]]), order.index(dim_of[p[1]]),
                                          dims[dim_of[p[0]]].index(p[0]), dims[dim_of[p[1]]].index(p[1])))
        row: Row = {dim_of[first[0]]: first[0], dim_of[first[1]]: first[1]}
        for d in order:
            if d in row:
                continue
            fits = [v for v in dims[d] if allowed({**row, d: v})]
            if not fits:
                raise ValueError(f"no value of {d!r} fits beside {row}")
            row[d] = max(fits, key=lambda v: (sum((u, v) in unmet or (v, u) in unmet for u in row.values()),
                                              -dims[d].index(v)))
        rows.append({d: row[d] for d in order})
        unmet -= pairs_of(row, order)
    return rows
