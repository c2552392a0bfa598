"""The TP sub-groups family, worker side: each rank runs the layer example on its own TP group."""

from __future__ import annotations

import dataclasses

import torch.distributed as dist
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.worker import run_example

_tp_groups: dict[int, list] = {}


def tp_group(tp_size: int):
    """This rank's TP group when the world is split into groups of ``tp_size`` consecutive ranks.

    ``dist.new_group`` is collective over the whole world: every rank creates every group, in the
    same order, the first time any command asks for this ``tp_size`` (all ranks get every command)."""
    if tp_size not in _tp_groups:
        world = dist.get_world_size()
        if tp_size < 1 or world % tp_size:
            raise ValueError(f"tp_size={tp_size} does not divide world_size={world}")
        _tp_groups[tp_size] = [dist.new_group(list(range(start, start + tp_size)))
                               for start in range(0, world, tp_size)]
    return _tp_groups[tp_size][dist.get_rank() // tp_size]


def run_tp_group(message: dict, impl) -> dict:
    """One layer example on this rank's TP group (its own tensors; the impl is given that group)."""
    case = LayerCase.from_dict(message["case"])
    group_case = dataclasses.replace(case, world_size=case.tp_size, tp_size=0)
    data = message["data"] if not message.get("sliced") else {**message["data"], "sliced": message["sliced"]}
    return run_example(impl, group_case, data, tp_group(case.tp_size), message.get("stages"))


COMMANDS = {"run_tp_group": run_tp_group}
