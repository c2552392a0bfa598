"""The single tensor-parallel linear layer — column or row — as a family (the spec: ``properties``)."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from tpconform.families.linear import verdict
from tpconform.families.linear.case import STAGES, LayerCase
from tpconform.families.linear.case_classes import CASE_CLASSES
from tpconform.families.linear.dense import dense_linear
from tpconform.families.linear.diagnosis import likely_cause
from tpconform.families.linear.run import run
from tpconform.families.linear.verdict import Evidence
from tpconform.spec.family import Family, Property
from tpconform.spec.violations import Violation
from tpconform.strategies import VARIANTS, Variant, layer_cases, world_sizes

# A sharded column output is not replicated: the ranks have nothing to agree on.
NOT_REPLICATED = "a sharded column output is not replicated: nothing to agree on"
# really_tensor_parallel reads the kernel's byte count of a loopback only the submission uses
NOT_MEASURED = ("not available here: it reads the kernel's byte count of a loopback no other process shares, which "
                "only the grading sandbox has (tpconform grade, without --unsandboxed)")


# The test module of each property (``tests/properties/test_<module>.py``): the spec's sections.
TEST_MODULES = {
    "shards": ("shards_rebuild_the_dense_weight",),
    "forward": ("output_matches_the_dense_layer", "ranks_agree_on_the_output", "output_shape_and_dtype_match_nn_linear"),
    "gradients": ("input_grad_matches_the_dense_layer", "weight_grad_matches_the_dense_layer",
                  "bias_grad_matches_the_dense_layer"),
    "side_effects": ("inputs_are_left_untouched",),
    "repeated_calls": ("repeated_calls_are_independent",),
    "communication": ("communicates_activations_not_weights", "communicates_what_the_other_ranks_need",
                      "really_tensor_parallel"),
    "training": ("training_step_matches_the_dense_layer",),
    "usage": ("micro_batches_accumulate_like_the_dense_layer", "a_frozen_input_still_trains_the_layer",
              "inference_calls_leave_training_unchanged"),
    "layer_lifecycle": ("the_layer_as_built_follows_the_convention", "a_state_dict_reloads_the_trained_layer",
                        "a_converted_layer_matches_the_dense_layer", "a_mixed_precision_step_matches_the_dense_layer"),
}
MODULE_OF = {prop: module for module, props in TEST_MODULES.items() for prop in props}


def variant_of(case: LayerCase) -> Variant:
    return Variant(case.kind, case.gather_output, case.input_is_parallel)


class LinearFamily(Family):
    name = "linear"
    title = "column- and row-parallel linear layers"
    case_type = LayerCase
    properties = {name: Property(name, fn, verdict.NEEDS[name], name in verdict.SELF_REPORTED,
                                 reads_backward=name not in verdict.FORWARD)
                  for name, fn in verdict.SPEC.items()}
    stages = STAGES
    derived_facts = ("batch_dims", "batch_numel", "uneven", "features_per_rank")
    order = 0  # the single layer first: the others build on it
    case_classes = CASE_CLASSES  # counted per property (case_classes.py: the classes, the covering cases)

    def claims(self, case) -> bool:
        return type(case) is LayerCase and case.tp_groups <= 1  # split into TP groups: subgroups'

    def test_module(self, prop: str) -> str:
        return MODULE_OF[prop]

    def variants(self) -> Sequence[Variant]:
        return VARIANTS

    def variant_of(self, case) -> str:
        return str(variant_of(case))

    def unsupported(self, suite, variant: Variant) -> Optional[str]:
        """Why the impl does not declare ``variant`` (``None`` when it does)."""
        caps = suite.capabilities.of(self.name)
        if variant.kind == "column" and variant.gather_output not in caps.column_gather_output:
            return f"{suite.impl_spec} does not declare gather_output={variant.gather_output}"
        if variant.kind == "row" and variant.input_is_parallel not in caps.row_input_is_parallel:
            return f"{suite.impl_spec} does not declare input_is_parallel={variant.input_is_parallel}"
        if not suite._dtypes(self.name):
            return f"{suite.impl_spec} declares none of the dtypes {list(suite.dtypes)}"
        return None

    def not_applicable(self, suite, variant, prop: str) -> Optional[str]:
        """What no impl can be checked on here first (the grade's maximum never depends on a declaration),
        then what the impl's declaration leaves out."""
        if prop == "ranks_agree_on_the_output" and str(variant) == "column-sharded-output":
            return NOT_REPLICATED
        if prop in verdict.MEASURED_OUTSIDE and suite.runner.traffic is None:
            return getattr(suite, "unmeasured", None) or NOT_MEASURED  # the grader says why it is not measured
        return self.not_declared(suite, variant, prop) or self.unsupported(suite, variant)

    def cases(self, suite, variant):
        # an impl that may reject non-divisible dims gets mostly divisible cases: an uneven case
        # only checks that it is rejected, and must not crowd out the cases that test the maths
        uneven = True if suite.capabilities.of(self.name).uneven_shards else "rarely"
        return layer_cases(variant=variant, world_sizes=world_sizes(allowed=suite.world_sizes),
                           dtypes=suite._dtypes(self.name), uneven=uneven)

    def run(self, suite, case: LayerCase, stages: Optional[Sequence[str]] = None) -> Evidence:
        """Run ``case`` (the worker ``stages`` named, all by default) and pair what came back with the
        float64 ground truth, which the verdict computes while the ranks run."""
        dense: list = []
        outcome = run(suite.runner, case, stages, while_waiting=lambda tensors: dense.append(dense_linear(tensors)),
                                   forward_only=not suite.capabilities.of(self.name).backward)
        suite.examples += 1
        truth = dense[0] if dense else dense_linear(outcome.tensors)
        return Evidence(case, outcome, truth, suite.capabilities.of(self.name).uneven_shards,
                        str(suite.description.get("convention") or ""))

    def judge(self, ev: Evidence, prop: str) -> list[Violation]:
        return verdict.evaluate(ev, prop)

    def crash(self, ev: Evidence) -> Optional[str]:
        return ev.outcome.crash or None

    def likely_cause(self, ev: Evidence, v: Violation) -> Optional[str]:
        return likely_cause(ev, v)

    def token(self, case: LayerCase) -> str:
        return case.token()  # the family's own cases keep their bare tokens (older reports replay)

    def facts(self, case: LayerCase) -> dict[str, Any]:
        facts = case.as_dict()
        facts["batch_shape"] = tuple(case.batch_shape)
        facts["batch_dims"] = len(case.batch_shape)
        facts["batch_numel"] = math.prod(case.batch_shape)
        facts["uneven"] = case.uneven
        split = case.out_features if case.kind == "column" else case.in_features
        facts["features_per_rank"] = split / (case.tp_size or case.world_size)  # < 1: a rank holds none
        facts["variant"] = self.variant_of(case)
        return facts


FAMILY = LinearFamily()
