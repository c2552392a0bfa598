"""Strategies for world sizes, feature counts, batch shapes, dtypes and whole layer cases."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from tpconform.families.linear.case import LayerCase, layouts_for
from tpconform.spec.dtypes import DTYPES


@dataclass(frozen=True)
class Variant:
    """A layer kind with one value of its option: what one parametrized property test covers."""

    kind: str
    gather_output: bool = True
    input_is_parallel: bool = False

    @property
    def option(self) -> bool:
        return self.gather_output if self.kind == "column" else self.input_is_parallel

    def __str__(self) -> str:
        if self.kind == "column":
            return "column-gathered" if self.gather_output else "column-sharded-output"
        return "row-sliced-input" if self.input_is_parallel else "row-full-input"


VARIANTS = (
    Variant("column", gather_output=True),
    Variant("column", gather_output=False),
    Variant("row", input_is_parallel=False),
    Variant("row", input_is_parallel=True),
)


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
def layouts(batch_dims: int):
    """Memory layouts for the input and the upstream grad (``tpconform.families.linear.case.LAYOUTS``) that mean
    something with ``batch_dims`` batch dims; shrinks towards ``contiguous``."""
    if batch_dims < 0:
        raise InvalidArgument(f"batch_dims must be >= 0, got {batch_dims}")
    return st.sampled_from(layouts_for(batch_dims))


@functools.cache
def scales(dtype: str):
    """Input magnitudes; float16 stays small enough that no sum overflows its range."""
    if dtype == "float16":
        return st.sampled_from([1.0, 2.0**-6])
    return st.sampled_from([1.0, 2.0**-6, 2.0**6])


_all_world_sizes = world_sizes


@st.composite
def layer_cases(
    draw,
    kind: Optional[str] = None,
    *,
    variant: Optional[Variant] = None,
    world_sizes=None,
    dtypes: Sequence[str] = DTYPES,
    max_features: int = 32,
    uneven: Union[bool, str] = True,
    max_batch_dims: int = 3,
    max_batch_side: int = 4,
    bias: Optional[bool] = None,
    batch_dims: Optional[tuple[int, ...]] = None,
) -> LayerCase:
    """A whole :class:`LayerCase`. ``kind``/``variant`` pin the layer kind (and its option);
    ``bias`` pins whether it has a bias; ``batch_dims`` allows only those numbers of batch dims."""
    if variant is not None:
        kind = variant.kind
    if kind is None:
        kind = draw(st.sampled_from(["column", "row"]), label="kind")
    if kind not in ("column", "row"):
        raise InvalidArgument(f"kind must be 'column' or 'row', got {kind!r}")
    ws = draw(world_sizes if world_sizes is not None else _all_world_sizes(), label="world_size")
    split = features(ws, max_value=max_features, uneven=uneven)
    free = st.integers(1, max_features)  # cached by Hypothesis itself (hashable arguments)
    in_features = draw(free if kind == "column" else split, label="in_features")
    out_features = draw(split if kind == "column" else free, label="out_features")
    dtype = draw(st.sampled_from(tuple(dtypes)), label="dtype")
    if variant is not None:
        option = variant.option
    else:
        option = draw(st.booleans(), label="gather_output" if kind == "column" else "input_is_parallel")
    shapes = (batch_shapes(max_dims=max_batch_dims, max_side=max_batch_side) if batch_dims is None
              else batch_shapes_with(tuple(batch_dims), max_side=max_batch_side))
    batch_shape = draw(shapes, label="batch_shape")
    return LayerCase(
        kind=kind,
        world_size=ws,
        in_features=in_features,
        out_features=out_features,
        batch_shape=batch_shape,
        dtype=dtype,
        bias=draw(st.booleans(), label="bias") if bias is None else bias,
        gather_output=option if kind == "column" else True,
        input_is_parallel=option if kind == "row" else False,
        layout=draw(layouts(len(batch_shape)), label="layout"),
        scale=draw(scales(dtype), label="scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )


def anchor_cases(variant: Variant, world_sizes, dtypes) -> list[LayerCase]:
    """Cases every search meets first, whatever its random draws: the classes where most bugs show
    (dims divisible by the world size, a non-zero bias, a non-empty batch of 1 and 2 dims, a
    transposed layout), at the smallest world sizes above 1 and the largest allowed, cycling through
    ``dtypes``. A budget of 15 random examples can miss all of them (empty batches, non-divisible
    dims an impl may reject, no bias): these make a grade never depend on that luck."""
    sizes = sorted(set(int(w) for w in world_sizes))
    parallel = [w for w in sizes if w >= 2]
    picks = list(dict.fromkeys(parallel[:2] + parallel[-1:])) or sizes[:1]
    out: list[LayerCase] = []
    for i, ws in enumerate(picks):
        out.append(LayerCase(kind=variant.kind, world_size=ws, in_features=2 * ws, out_features=3 * ws,
                             batch_shape=(3,), dtype=dtypes[i % len(dtypes)], bias=True,
                             gather_output=variant.gather_output, input_is_parallel=variant.input_is_parallel,
                             seed=101 + i))
    first = out[0]
    out.append(LayerCase(kind=variant.kind, world_size=first.world_size, in_features=first.in_features,
                         out_features=first.out_features, batch_shape=(2, 3), dtype=dtypes[-1], bias=True,
                         gather_output=variant.gather_output, input_is_parallel=variant.input_is_parallel,
                         layout="transposed", seed=201))
    return out


def parallelism_features(world_size: int) -> int:
    """The features (each way) of a parallelism case: 512 up to 4 ranks, 1024 from 5 (the allowance
    grows with the pairs of ranks), a multiple of the world size. At 2 ranks one gather of the weight
    (1 MiB) is 4.6 times a whole example's allowance (229,376 bytes); the reference sends ~55 KB."""
    n = 512 if world_size <= 4 else 1024
    return n - n % world_size


def parallelism_cases(variant: Variant, world_sizes, dtypes, *, batch_dims: int = 1,
                      bias: bool = True) -> list[LayerCase]:
    """Cases where the weight is far larger than the activations (one batch row,
    :func:`parallelism_features` each way), in float32 when ``dtypes``
    has it: there the grading's parallelism check (``really_tensor_parallel``) separates a layer that
    moves activations from one that moves its weight. World size: the smallest above 1 (grading time:
    a layer that moves its weight does so at every world size). Gathering the weight once costs (ranks − 1) × n²
    elements; the allowance for a whole example's activations (10 passes) is 3.8 times less at 2 ranks
    (``tpconform.families.linear.verdict.loopback_allowance``). ``batch_dims``: how many batch dims
    the input has (0: a 1-D input), as a contract allows them."""
    dtype = "float32" if "float32" in dtypes else list(dtypes)[0]
    parallel = [w for w in sorted(set(int(w) for w in world_sizes)) if w >= 2]
    out = []
    for i, ws in enumerate(parallel[:1]):
        n = parallelism_features(ws)
        out.append(LayerCase(kind=variant.kind, world_size=ws, in_features=n, out_features=n,
                             batch_shape=(1,) * batch_dims, dtype=dtype, bias=bias, gather_output=variant.gather_output,
                             input_is_parallel=variant.input_is_parallel, seed=401 + i))
    return out
