"""A builder's name map read on a rank (worker side): which of its parameters holds each dense parameter, and
where that rank's part sits in the dense one (``case.py`` says what a builder returns).

    {dense name: (their name, sharding)}
    sharding: None | dim | (dim, start, stop) | (dim, start, stop, [(a, b), ...])

:func:`where_of` turns one sharding into the ``[[start, stop], …]`` per dim the verdict reads for every
parameter, a plan's alike (``worker.placement``), and, for the four-part form (a fused parameter: Megatron's
``linear_qkv`` holds parts of ``wq``, ``wk`` and ``wv`` per query group, its ``linear_fc1`` ``[w1; w3]``),
the ranges of their tensor that together hold this dense parameter's part (:class:`Part`). A malformed entry
comes back as a line saying why, which the verdict prints where it says the part's place is not known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from tpconform.spec.partition import chunk_sizes


def _chunk(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s ``[start, stop)`` of ``n`` rows split as ``torch.chunk`` (DTensor ``Shard``) splits them."""
    sizes = chunk_sizes(n, world_size)
    return sum(sizes[:rank]), sum(sizes[: rank + 1])


@dataclass(frozen=True)
class Part:
    """Which ranges of their (local) tensor along ``dim``, concatenated in order, hold the dense part: how a
    fused parameter's value and grad are cut back into each dense parameter's."""

    dim: int
    ranges: tuple[tuple[int, int], ...]

    def of(self, t: torch.Tensor) -> torch.Tensor:
        pieces = [t.narrow(self.dim, a, b - a) for a, b in self.ranges]
        return torch.cat(pieces, self.dim) if pieces else t.narrow(self.dim, 0, 0)


def _ranges(parts: Any, length: int) -> Union[tuple[tuple[int, int], ...], str]:
    if not isinstance(parts, (tuple, list)) or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(type(i) is int for i in p) and 0 <= p[0] <= p[1]
            for p in parts):
        return f"its ranges {parts!r} are not a list of (start, stop) pairs"
    if sum(b - a for a, b in parts) != length:
        return f"its ranges {parts!r} hold {sum(b - a for a, b in parts)} rows, not the {length} of start:stop"
    return tuple((int(a), int(b)) for a, b in parts)


def where_of(sharding: Any, dense_shape: torch.Size, rank: int,
             world_size: int) -> tuple[Union[list[list[int]], str], Optional[Part]]:
    """Where rank ``rank``'s part of a dense parameter of ``dense_shape`` sits, per ``sharding``, or why the
    sharding cannot be read; and, for a fused parameter, which of their ranges hold that part."""
    whole = [[0, int(n)] for n in dense_shape]
    parts: Any = None
    if sharding is None:
        return whole, None
    if type(sharding) is int:
        dim, (start, stop) = sharding, (None, None)
    elif (isinstance(sharding, (tuple, list)) and len(sharding) in (3, 4)
          and all(type(i) is int for i in sharding[:3])):
        dim, start, stop = sharding[:3]
        parts = sharding[3] if len(sharding) == 4 else None
    else:
        return f"sharding {sharding!r} is none of None, a dim, (dim, start, stop), (dim, start, stop, ranges)", None
    if not -len(dense_shape) <= dim < len(dense_shape):
        return f"sharding {sharding!r}: the dense parameter has {len(dense_shape)} dim(s)", None
    dim %= len(dense_shape)
    if start is None:
        start, stop = _chunk(int(dense_shape[dim]), rank, world_size)
    whole[dim] = [start, stop]
    if parts is None:
        return whole, None
    ranges = _ranges(parts, stop - start)
    if isinstance(ranges, str):
        return f"sharding {sharding!r}: {ranges}", None
    return whole, Part(dim, ranges)


def their_parameters(module, name_map: Any, dense_shapes: dict, rank: int,
                     world_size: int) -> dict[str, tuple[Any, Union[list[list[int]], str], Optional[Part]]]:
    """Each dense parameter the name map names: (the module's parameter holding it, or ``None`` when it has no
    such parameter; where this rank's part sits, or why that is not known; the ranges of a fused one)."""
    if not isinstance(name_map, dict):
        raise TypeError(f"a builder must return (module, name map dict), got a name map of "
                        f"{type(name_map).__name__}")
    theirs = dict(module.named_parameters(remove_duplicate=False))  # a tied one under each of its names
    out: dict[str, tuple[Any, Union[list[list[int]], str], Optional[Part]]] = {}
    for dense_name, entry in name_map.items():
        if dense_name not in dense_shapes:
            continue  # names no dense parameter: the verdict judges the dense ones it expects
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
            out[dense_name] = (None, f"name map entry {entry!r} is not (their parameter name, sharding)", None)
            continue
        their_name, sharding = entry
        where, part = where_of(sharding, dense_shapes[dense_name], rank, world_size)
        p = theirs.get(their_name)
        if p is None:
            where = f"the module has no parameter {their_name!r}"
        elif part is not None:
            local = p.to_local() if hasattr(p, "to_local") else p
            rows = local.shape[part.dim] if part.dim < local.dim() else 0
            if any(b > rows for _, b in part.ranges):
                where, part = f"sharding {sharding!r}: their {their_name} has {rows} rows along dim {part.dim}", None
        out[dense_name] = (p, where, part)
    return out
