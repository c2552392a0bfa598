"""TP sub-groups as a family: the linear spec, checked in every TP group of one world (``verdict``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

from tpconform.families.linear import verdict
from tpconform.families.linear.case import STAGES, LayerCase
from tpconform.families.linear.family import FAMILY as LINEAR
from tpconform.families.linear.verdict import Evidence
from tpconform.families.subgroups.case import SubgroupsCase
from tpconform.families.subgroups.diagnosis import likely_cause
from tpconform.families.subgroups.strategy import tp_group_cases, tp_layouts
from tpconform.families.subgroups.verdict import evidences, group_ranks
from tpconform.spec.family import Family, Property
from tpconform.spec.violations import Violation

# the single-group spec, checked in every TP group of one run
PER_GROUP_SPEC = (
    "shards_rebuild_the_dense_weight",
    "output_matches_the_dense_layer",
    "ranks_agree_on_the_output",
    "input_grad_matches_the_dense_layer",
    "weight_grad_matches_the_dense_layer",
    "bias_grad_matches_the_dense_layer",
)


@dataclass
class GroupsEvidence:
    """One :class:`Evidence` per TP group, each reading like a single-group example."""

    case: LayerCase
    groups: list[Evidence]

    @property
    def crash(self) -> Optional[str]:
        return self.groups[0].outcome.crash if self.groups else None


class SubgroupsFamily(Family):
    name = "subgroups"
    title = "layers given a TP sub-group of the world"
    case_type = SubgroupsCase
    order = 1  # right after the single layer it splits into groups
    properties = {name: Property(name, verdict.SPEC[name], verdict.NEEDS[name], name in verdict.SELF_REPORTED,
                                 reads_backward=name not in verdict.FORWARD)
                  for name in PER_GROUP_SPEC}
    stages = STAGES
    # a world of 4 or 6 ranks per example, and six properties over the same kind of cases: a third of
    # the profile's examples per test (as many examples in all as its one test of every property had)
    example_share = 1 / 3
    derived_facts = LINEAR.derived_facts

    def claims(self, case) -> bool:
        return type(case) is LayerCase and case.tp_groups > 1

    def variants(self):
        return LINEAR.variants()

    def variant_of(self, case) -> str:
        return LINEAR.variant_of(case)

    def not_applicable(self, suite, variant, prop: str) -> Optional[str]:
        if not suite.capabilities.of(self.name).accepts_group:
            convention = str(suite.description.get("convention") or "")[:40]
            who = f"the {convention} convention's layers" if convention else f"{suite.impl_spec}'s layers"
            return (f"not applicable: {who} take rank and world size from the default group and cannot be given "
                    "a TP sub-group (capability accepts_group=False)")
        undeclared = self.not_declared(suite, variant, prop)
        if undeclared:
            return undeclared
        if not suite._dtypes(self.name):
            return f"{suite.impl_spec} declares the layers on a sub-group for none of the dtypes {list(suite.dtypes)}"
        if not tp_layouts(suite.world_sizes):
            return f"--world-sizes {list(suite.world_sizes)} holds neither 4 nor 6"
        return LINEAR.not_applicable(suite, variant, prop)

    def cases(self, suite, variant):
        return tp_group_cases(variant, layouts=tp_layouts(suite.world_sizes), dtypes=suite._dtypes(self.name))

    def run(self, suite, case: LayerCase, stages: Optional[Sequence[str]] = None) -> GroupsEvidence:
        return GroupsEvidence(case, evidences(suite, case, stages))

    def judge(self, ev: GroupsEvidence, prop: str) -> list[Violation]:
        """The ways ``prop`` fails in any TP group, each message saying which group."""
        out = []
        for g, group_ev in enumerate(ev.groups):
            ranks = group_ranks(ev.case, g)
            where = f"TP group {g} (global ranks {ranks.start}-{ranks.stop - 1}; ranks below are group-local)"
            out += [dataclasses.replace(v, message=f"{where}: {v.message}", where=(g, v))
                    for v in verdict.evaluate(group_ev, prop)]
        return out

    def likely_cause(self, ev: GroupsEvidence, v: Violation) -> Optional[str]:
        return likely_cause(ev, v)

    def token(self, case: LayerCase) -> str:
        return case.token()  # a LayerCase with tp_size set: its bare token replays as sub-groups

    def facts(self, case: LayerCase) -> dict:
        return LINEAR.facts(case)

    def test_name(self, prop: str) -> str:
        return f"test_in_every_tp_group_{prop}"


FAMILY = SubgroupsFamily()
