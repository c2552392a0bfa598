"""The TP sub-groups family, worker side: each rank runs the layer example on its own TP group."""

from __future__ import annotations

import dataclasses

from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.worker import run_example
from tpconform.transport.tp_groups import tp_group


def run_tp_group(message: dict, impl) -> dict:
    """One layer example on this rank's TP group (its own tensors; the impl is given that group)."""
    case = LayerCase.from_dict(message["case"])
    group_case = dataclasses.replace(case, world_size=case.tp_size, tp_size=0)
    data = message["data"] if not message.get("sliced") else {**message["data"], "sliced": message["sliced"]}
    return run_example(impl, group_case, data, tp_group(case.tp_size), message.get("stages"))


COMMANDS = {"run_tp_group": run_tp_group}
