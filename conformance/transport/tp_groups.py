"""The TP sub-groups a worker keeps across examples: the world split into groups of ``tp_size`` consecutive
ranks, made once per size. The sub-groups family runs its examples on them (``families/subgroups/worker.py``),
and the worker's probe of a group every rank of which raised checks each of them (``transport/worker.py``)."""

from __future__ import annotations

import torch.distributed as dist

_groups: dict[int, list] = {}


def tp_group(tp_size: int):
    """This rank's TP group when the world is split into groups of ``tp_size`` consecutive ranks.

    ``dist.new_group`` is collective over the whole world: every rank creates every group, in the
    same order, the first time any command asks for this ``tp_size`` (all ranks get every command)."""
    if tp_size not in _groups:
        world = dist.get_world_size()
        if tp_size < 1 or world % tp_size:
            raise ValueError(f"tp_size={tp_size} does not divide world_size={world}")
        _groups[tp_size] = [dist.new_group(list(range(start, start + tp_size)))
                            for start in range(0, world, tp_size)]
    return _groups[tp_size][dist.get_rank() // tp_size]


def kept_sizes() -> list[int]:
    """The sizes of the TP groups made so far, in order (every rank the same)."""
    return sorted(_groups)
