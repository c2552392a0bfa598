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

from conformance.engine.runner import Outcome, _sliced_messages
from conformance.families.linear import properties
from conformance.families.linear.diagnosis import likely_cause
from conformance.families.linear.properties import Evidence, Violation
from conformance.spec.cases import STAGES, LayerCase, make_tensors
from conformance.spec.dense import dense_linear


def group_case(case: LayerCase, g: int) -> LayerCase:
    """TP group ``g``'s own example: the case on a world of ``tp_size`` ranks, with its own seed."""
    return dataclasses.replace(case, world_size=case.tp_size, tp_size=0, seed=(case.seed + g) % 2**31)


def group_ranks(case: LayerCase, g: int) -> range:
    return range(g * case.tp_size, (g + 1) * case.tp_size)


def run(suite, case: LayerCase, stages: Optional[Sequence[str]] = None) -> list[Outcome]:
    """Run every TP group's example at once on one world (the worker ``stages`` named, all by
    default); one :class:`Outcome` per TP group."""
    cases = [group_case(case, g) for g in range(case.tp_groups)]
    stages = tuple(STAGES if stages is None else stages)
    outcomes = [Outcome(c, make_tensors(c, update="train_step" in stages), stages=stages) for c in cases]
    messages = {
        r: {"cmd": "run_tp_group", "impl": suite.impl_spec, "case": case.as_dict(),
            "data": outcomes[g].tensors.as_dict(), "stages": list(stages)}
        for g in range(case.tp_groups) for r in group_ranks(case, g)
    }
    sliced = (case.kind == "row" and case.input_is_parallel) or (case.kind == "column" and not case.gather_output)
    if sliced and stages:  # each rank gets only its slice, as in Runner.run
        first, crash = suite.runner.request(case.world_size, {r: {**m, "stages": []} for r, m in messages.items()})
        if crash is None and not any(res.get("construct_failed_ranks") for res in first.values()):
            for g in range(case.tp_groups):
                ranks = list(group_ranks(case, g))
                per = _sliced_messages(cases[g], messages[ranks[0]], outcomes[g].tensors, [first[r] for r in ranks])
                messages.update({r: per[i] for i, r in enumerate(ranks)})
        elif crash is None:
            for g, oc in enumerate(outcomes):
                oc.ranks = [first[r] for r in group_ranks(case, g)]
            return outcomes
        else:
            for oc in outcomes:
                oc.crash = crash
            return outcomes
    results, crash = suite.runner.request(case.world_size, messages)
    for g, oc in enumerate(outcomes):
        oc.crash = crash
        if not crash:
            oc.ranks = [results[r] for r in group_ranks(case, g)]
    return outcomes


def evidences(suite, case: LayerCase, stages: Optional[Sequence[str]] = None) -> list[Evidence]:
    """One :class:`Evidence` per TP group, each reading like a single-group example."""
    suite.examples += 1
    uneven_ok = suite.capabilities.uneven_shards
    return [Evidence(oc.case, oc, dense_linear(oc.tensors), uneven_ok) for oc in run(suite, case, stages)]


def _found(evs: Sequence[Evidence], props: Sequence[str]) -> bool:
    return any(properties.evaluate(ev, prop) for ev in evs for prop in props)


def checked(suite, case: LayerCase, props: Sequence[str]) -> list[Evidence]:
    """The evidence for ``props``: the example run with only the stages they read, and run again
    with every stage when one of them fails, so the report sees everything (as ``Suite.checked``)."""
    stages = properties.stages_for(props)
    evs = evidences(suite, case, stages)
    if stages != STAGES and _found(evs, props) and not evs[0].outcome.crash:
        full = evidences(suite, case)
        if _found(full, props) and not full[0].outcome.crash:
            return full
    return evs


def _in_group(case: LayerCase, g: int, v: Violation) -> Violation:
    ranks = group_ranks(case, g)
    where = f"TP group {g} (global ranks {ranks.start}-{ranks.stop - 1}; ranks below are group-local)"
    return dataclasses.replace(v, message=f"{where}: {v.message}")


def violations(suite, case: LayerCase, prop: str, evs: Sequence[Evidence] = ()) -> list[Violation]:
    """The ways ``prop`` fails in any TP group of ``case``."""
    evs = evs or checked(suite, case, [prop])
    return [_in_group(case, g, v) for g, ev in enumerate(evs) for v in properties.evaluate(ev, prop)]


def check(suite, case: LayerCase, props: Sequence[str]) -> None:
    """Run ``case`` once and raise one report naming every property that fails in any TP group."""
    from conformance.engine.suite import replay_command

    evs = checked(suite, case, props)
    lines = []
    for prop in props:
        found = [(g, v) for g, ev in enumerate(evs) for v in properties.evaluate(ev, prop)]
        if not found:
            continue
        lines.append(f"property violated in a TP sub-group: {prop.replace('_', ' ')}")
        for g, v in found[:6]:
            lines.append(f"  - {_in_group(case, g, v).message}")
            cause = likely_cause(evs[g], v)
            if cause:
                lines.append(f"    likely cause: {cause}")
        lines.append(f"replay: {replay_command(suite.impl_spec, case, prop)}")
    if lines:
        raise AssertionError("\n".join([f"case: {case.describe()}", *lines]))


def not_applicable(suite) -> Optional[str]:
    """Why sub-group checks do not apply to the impl under test (``None``: they do), in one line."""
    if suite.capabilities.accepts_group:
        return None
    convention = str(suite.description.get("convention") or "")[:40]
    who = f"the {convention} convention's layers" if convention else f"{suite.impl_spec}'s layers"
    return (f"not applicable: {who} take rank and world size from the default group and cannot be given "
            "a TP sub-group (capability accepts_group=False)")


def cases(suite, variant):
    """The strategy of sub-group cases for ``variant`` within the run's options (``None``: the
    allowed world sizes hold no layout)."""
    from strategies.groups import tp_group_cases, tp_layouts

    layouts = tp_layouts(suite.world_sizes)
    return tp_group_cases(variant, layouts=layouts, dtypes=suite._dtypes()) if layouts else None


def replay(suite, case: LayerCase, names: Sequence[str]) -> int:
    """``python -m conformance replay`` for a sub-group case: run it once, report each property."""
    evs = evidences(suite, case)
    failed = 0
    for name in names:
        found = violations(suite, case, name, evs)
        failed += bool(found)
        print("\n".join([f"property violated: {name}", *(f"  - {v.message}" for v in found)]) + "\n"
              if found else f"ok: {name}")
    print(f"{len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0
