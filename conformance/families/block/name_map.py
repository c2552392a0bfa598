"""A builder's name map read on a rank (worker side): which of its parameters holds each dense parameter, and
where that rank's part sits in the dense one (``case.py`` says what a builder returns).

    {dense name: (their name, sharding)}   sharding: None | dim | (dim, start, stop)

:func:`where_of` turns one sharding into the ``[[start, stop], …]`` per dim the verdict reads for every
parameter, a plan's alike (``worker.placement``); a malformed entry comes back as a line saying why, which
the verdict prints where it says the part's place is not known."""

from __future__ import annotations

from typing import Any, Union

import torch
from tpconform.spec.partition import chunk_sizes


def _chunk(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s ``[start, stop)`` of ``n`` rows split as ``torch.chunk`` (DTensor ``Shard``) splits them."""
    sizes = chunk_sizes(n, world_size)
    return sum(sizes[:rank]), sum(sizes[: rank + 1])


def where_of(sharding: Any, dense_shape: torch.Size, rank: int, world_size: int) -> Union[list[list[int]], str]:
    """Where rank ``rank``'s part of a dense parameter of ``dense_shape`` sits, per ``sharding``; or why the
    sharding cannot be read."""
    whole = [[0, int(n)] for n in dense_shape]
    if sharding is None:
        return whole
    if type(sharding) is int:
        dim, (start, stop) = sharding, (None, None)
    elif (isinstance(sharding, (tuple, list)) and len(sharding) == 3
          and all(type(i) is int for i in sharding)):
        dim, start, stop = sharding
    else:
        return f"sharding {sharding!r} is none of None, a dim, (dim, start, stop)"
    if not -len(dense_shape) <= dim < len(dense_shape):
        return f"sharding {sharding!r}: the dense parameter has {len(dense_shape)} dim(s)"
    dim %= len(dense_shape)
    if start is None:
        start, stop = _chunk(int(dense_shape[dim]), rank, world_size)
    whole[dim] = [start, stop]
    return whole


def their_parameters(module, name_map: Any, dense_shapes: dict, rank: int,
                     world_size: int) -> dict[str, tuple[Any, Union[list[list[int]], str]]]:
    """Each dense parameter the name map names: (the module's parameter holding it, or ``None`` when it has no
    such parameter; where this rank's part sits, or why that is not known)."""
    if not isinstance(name_map, dict):
        raise TypeError(f"build_tp_block must return (module, name map dict), got a name map of "
                        f"{type(name_map).__name__}")
    theirs = dict(module.named_parameters())
    out: dict[str, tuple[Any, Union[list[list[int]], str]]] = {}
    for dense_name, entry in name_map.items():
        if dense_name not in dense_shapes:
            continue  # names no dense parameter: the verdict judges the dense ones it expects
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
            out[dense_name] = (None, f"name map entry {entry!r} is not (their parameter name, sharding)")
            continue
        their_name, sharding = entry
        where = where_of(sharding, dense_shapes[dense_name], rank, world_size)
        if their_name not in theirs:
            where = f"the module has no parameter {their_name!r}"
        out[dense_name] = (theirs.get(their_name), where)
    return out
