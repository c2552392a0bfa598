"""TP sub-groups: the world split into independent tensor-parallel groups (verdict side).

A case with ``tp_size`` set (``world_size = tp_size × groups``) runs on one process group of
``world_size`` ranks that the workers split into TP groups of ``tp_size`` consecutive ranks
(``dist.new_group``, every rank, same order); each rank's impl is given *its* TP group. Every TP
group gets its own example (its own seed, so its own weight, input and upstream grad), and every
property of the spec must hold in each group on its own, exactly as if that group were the world.

A layer that silently uses the default (WORLD) group instead of the one it was given mixes the
groups' data or splits over the wrong number of ranks — which only this shows.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from tpconform.families.linear.case import LayerCase, declared_stages
from tpconform.families.linear.dense import dense_linear
from tpconform.families.linear.results import RankResult
from tpconform.families.linear.run import Outcome, build_only, sliced_messages
from tpconform.families.linear.tensors import make_tensors
from tpconform.families.linear.verdict import Evidence
from tpconform.spec.plain_case import for_workers


def group_case(case: LayerCase, g: int) -> LayerCase:
    """TP group ``g``'s own example: the case on a world of ``tp_size`` ranks, with its own seed."""
    return dataclasses.replace(case, world_size=case.tp_size, tp_size=0, seed=(case.seed + g) % 2**31)


def group_ranks(case: LayerCase, g: int) -> range:
    return range(g * case.tp_size, (g + 1) * case.tp_size)


def run(suite, case: LayerCase, stages: Optional[Sequence[str]] = None) -> list[Outcome]:
    """Run every TP group's example at once on one world (the worker ``stages`` named, all by
    default); one :class:`Outcome` per TP group."""
    cases = [group_case(case, g) for g in range(case.tp_groups)]
    forward_only = not suite.capabilities.of("subgroups").backward
    stages = declared_stages(stages, forward_only)
    outcomes = [Outcome(c, make_tensors(c, update="train_step" in stages), stages=stages) for c in cases]
    messages = {
        r: {"cmd": "run_tp_group", "family": "subgroups", "impl": suite.impl_spec, "case": for_workers(case),
            "data": outcomes[g].tensors.as_dict(), "stages": list(stages),
            **({"forward_only": True} if forward_only else {})}  # under no_grad (transport/worker.py)
        for g in range(case.tp_groups) for r in group_ranks(case, g)
    }
    if case.sharding.sliced_tensor(case) and not stages:  # the shards alone are read, as in Runner.run
        messages = {r: build_only(m) for r, m in messages.items()}
    elif case.sharding.sliced_tensor(case):  # each rank gets only its slice, as in Runner.run
        first, crash = suite.runner.request(case.world_size, {r: build_only(m) for r, m in messages.items()})
        if crash is None and not any(res.get("construct_failed_ranks") for res in first.values()):
            for g in range(case.tp_groups):
                ranks = list(group_ranks(case, g))
                per = sliced_messages(cases[g], messages[ranks[0]], outcomes[g].tensors, [first[r] for r in ranks])
                messages.update({r: per[i] for i, r in enumerate(ranks)})
        elif crash is None:
            for g, oc in enumerate(outcomes):
                oc.ranks = [RankResult.from_wire(first[r]) for r in group_ranks(case, g)]
            return outcomes
        else:
            for oc in outcomes:
                oc.crash = crash
            return outcomes
    results, crash = suite.runner.request(case.world_size, messages)
    for g, oc in enumerate(outcomes):
        oc.crash = crash
        if not crash:
            oc.ranks = [RankResult.from_wire(results[r]) for r in group_ranks(case, g)]
    return outcomes


def evidences(suite, case: LayerCase, stages: Optional[Sequence[str]] = None) -> list[Evidence]:
    """One :class:`Evidence` per TP group, each reading like a single-group example."""
    suite.examples += 1
    uneven_ok = suite.capabilities.of("subgroups").uneven_shards
    return [Evidence(oc.case, oc, dense_linear(oc.tensors), uneven_ok) for oc in run(suite, case, stages)]
