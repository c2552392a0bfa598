"""The linear family's Hypothesis strategies: its variants (a layer kind with one value of its option),
whole :class:`LayerCase` draws, memory layouts, and the fixed cases a grade meets first (anchors,
parallelism cases); re-exported by ``tpconform.strategies``. The covering cases of every case class
and pair are ``case_classes.py`` beside it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from tpconform.families.linear.case import LayerCase, layouts_for
from tpconform.strategies.layers import DTYPES, batch_shapes, batch_shapes_with, features, scales
from tpconform.strategies.layers import world_sizes as _all_world_sizes

__all__ = ["VARIANTS", "Variant", "anchor_cases", "layer_cases", "layouts", "parallelism_cases"]


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


@functools.cache
def layouts(batch_dims: int):
    """Memory layouts for the input and the upstream grad (``tpconform.families.linear.case.LAYOUTS``) that mean
    something with ``batch_dims`` batch dims; shrinks towards ``contiguous``."""
    if batch_dims < 0:
        raise InvalidArgument(f"batch_dims must be >= 0, got {batch_dims}")
    return st.sampled_from(layouts_for(batch_dims))



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
        micro_batches=draw(st.integers(2, 4), label="micro_batches"),
    )


def anchor_cases(variant: Variant, world_sizes, dtypes) -> list[LayerCase]:
    """Cases every search meets first, whatever its random draws: the classes where most bugs show
    (dims divisible by the world size, a non-zero bias, a non-empty batch of 1 and 2 dims, a
    transposed layout; the first with three micro-batches in the usage protocols), at the smallest world sizes above 1 and the largest allowed, cycling through
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
                             seed=101 + i, micro_batches=3 if i == 0 else 2))
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
