"""The building blocks every family's strategies draw from: world sizes, feature counts split over
them, batch shapes, dtypes and input scales (each family's own strategies are in its folder's
``strategy.py``; the linear layer's, ``layer_cases`` and its variants, in ``families/linear/strategy.py``)."""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from tpconform.spec.dtypes import DTYPES

__all__ = ["DTYPES", "batch_shapes", "batch_shapes_with", "dtypes", "features", "scales", "world_sizes"]


def world_sizes(min_size: int = 1, max_size: int = 8, *, allowed: Optional[Sequence[int]] = None):
    """Group sizes from ``min_size`` to ``max_size`` (not only powers of two), or from ``allowed``."""
    if allowed is not None:
        allowed = sorted(set(int(a) for a in allowed))
        if not allowed or allowed[0] < 1:
            raise InvalidArgument(f"allowed world sizes must be positive, got {allowed}")
        return st.sampled_from(allowed)
    if not 1 <= min_size <= max_size:
        raise InvalidArgument(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    return st.integers(min_size, max_size)


# Strategies are built once per distinct argument set (``functools.cache``): Hypothesis works out
# a new strategy object's properties on first use, which cost more than running an example.
@functools.cache
def features(world_size: int, *, max_value: int = 32, uneven: Union[bool, str] = True):
    """Feature counts for a dim split over ``world_size`` ranks: smaller than the world size,
    divisible by it, or anything up to ``max_value``. ``uneven=False``: multiples only;
    ``uneven="rarely"``: mostly multiples (for impls that may reject non-divisible dims, whose
    uneven cases only check that they are rejected)."""
    if world_size < 1 or max_value < 1:
        raise InvalidArgument(f"world_size and max_value must be positive, got {world_size}, {max_value}")
    if uneven not in (True, False, "rarely"):
        raise InvalidArgument(f"uneven must be True, False or 'rarely', got {uneven!r}")
    multiples = st.integers(1, max(1, max_value // world_size)).map(lambda k: k * world_size)
    if not uneven:
        return multiples
    if uneven == "rarely":
        return st.one_of(multiples, multiples, st.integers(1, max_value))
    return st.one_of(st.integers(1, max_value), multiples, st.integers(1, world_size))


@functools.cache
def batch_shapes(*, max_dims: int = 3, max_side: int = 4, allow_empty: bool = True):
    """Leading batch shapes with 0..max_dims dims; with ``allow_empty`` a side may be 0."""
    if max_dims < 0 or max_side < 1:
        raise InvalidArgument(f"need max_dims >= 0 and max_side >= 1, got {max_dims}, {max_side}")
    side = st.integers(0 if allow_empty else 1, max_side)
    return st.lists(side, min_size=0, max_size=max_dims).map(tuple)


@functools.cache
def batch_shapes_with(dims: tuple[int, ...], *, max_side: int = 4, allow_empty: bool = True):
    """Leading batch shapes with exactly one of ``dims`` dims (e.g. ``(1, 2, 3)``: a 2-D or more input)."""
    if not dims or min(dims) < 0 or max_side < 1:
        raise InvalidArgument(f"need non-negative dims and max_side >= 1, got {dims}, {max_side}")
    side = st.integers(0 if allow_empty else 1, max_side)
    return st.one_of(*[st.lists(side, min_size=d, max_size=d).map(tuple) for d in sorted(set(dims))])


def dtypes(allowed: Sequence[str] = DTYPES):
    bad = [d for d in allowed if d not in DTYPES]
    if bad or not allowed:
        raise InvalidArgument(f"dtypes must be a non-empty subset of {DTYPES}, got {list(allowed)}")
    return st.sampled_from(list(allowed))


@functools.cache
def scales(dtype: str):
    """Input magnitudes; float16 stays small enough that no sum overflows its range."""
    if dtype == "float16":
        return st.sampled_from([1.0, 2.0**-6])
    return st.sampled_from([1.0, 2.0**-6, 2.0**6])
