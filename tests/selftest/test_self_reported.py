"""No fact measured inside the candidate's process earns points, in any family, and the maximum is the
grader's: each property declares whether its evidence is measured in the candidate's process
(``spec.family.Property.self_reported``); these walk every family's properties (in-process, no workers)."""

import ast
import inspect
import re
import textwrap

import pytest
from tpconform.families.registry import families
from tpconform.grading.catalog import VARIANTS_OF
from tpconform.grading.scoring import Weights, load_weights, score_submission

# what a worker measures about the candidate inside its process (worker.py's ``*_modified`` flags, the
# collective counts of ``worker_tools.CollectiveVolume``): a property whose judge reads one is self-reported
MEASURED_IN_THE_CANDIDATES_PROCESS = re.compile(r"_modified|collective")
EVERY_FAMILY = {"families": sorted(families())}


def code_of(judge) -> str:
    """The judge's code without its docstring (prose may name a collective without reading a count)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(judge)))
    fn = tree.body[0]
    if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant):
        fn.body = fn.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def every_property():
    return [(name, prop) for name, fam in families().items() for prop in fam.properties.values()]


def weighted_self_reports(weights: Weights) -> list[str]:
    """The self-reported properties of any family that ``weights`` would give points to."""
    declared = {prop.name for _, prop in every_property() if prop.self_reported}
    points = {**weights.points, **weights.family_points}
    return sorted(p for p in declared | set(weights.self_reported) if points.get(p, 0) > 0)


def test_a_property_that_reads_an_in_process_measurement_declares_it():
    undeclared = [f"{family}: {prop.name}" for family, prop in every_property()
                  if MEASURED_IN_THE_CANDIDATES_PROCESS.search(code_of(prop.judge)) and not prop.self_reported]
    assert not undeclared, f"reads a fact the candidate's process measures, not declared self_reported: {undeclared}"
    # the known ones, in every family that has one (a check that finds none would prove nothing)
    declared = {prop.name for _, prop in every_property() if prop.self_reported}
    assert {"inputs_are_left_untouched", "primitive_leaves_its_inputs_untouched",
            "cross_entropy_leaves_its_logits_untouched", "mlp_forward_uses_one_all_reduce"} <= declared


def test_no_self_reported_property_of_any_family_weighs_anything(tmp_path):
    assert weighted_self_reports(load_weights()) == []
    # a weights file cannot buy them back: it may add self-reported properties, never remove one
    hostile = tmp_path / "w.toml"
    hostile.write_text("[weights]\n" + "".join(f"{p} = 50\n" for p in VARIANTS_OF if p.endswith("untouched")
                                               or "all_reduce" in p or p.startswith("communicates"))
                       + "[self_reported]\nproperties = []\n")
    assert weighted_self_reports(load_weights(str(hostile))) == []
    # and the check sees one that does (a weights object built without the rule)
    forged = Weights({"inputs_are_left_untouched": 5.0}, (), "forged", (),
                     {"mlp_forward_uses_one_all_reduce": 5.0})
    assert weighted_self_reports(forged) == ["inputs_are_left_untouched", "mlp_forward_uses_one_all_reduce"]


def test_a_weights_file_may_name_any_familys_property_as_self_reported(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('[self_reported]\nproperties = ["mlp_output_matches_the_dense_mlp"]\n')
    assert load_weights(str(path)).family_points["mlp_output_matches_the_dense_mlp"] == 0


def _result(passing_families: set) -> dict:
    """A finished result whose cells pass in ``passing_families`` and are n/a (not offered) elsewhere."""
    cells = []
    for prop, variants in VARIANTS_OF.items():
        for variant in variants:
            family = variant.split("/")[0] if "/" in variant else "linear"
            if family == "linear" or family in passing_families:
                verdict = "pass" if family in passing_families else "fail"
                cells.append({"property": prop, "variant": variant, "verdict": verdict, "reason": None, "examples": 1})
            else:
                cells.append({"property": prop, "variant": variant, "verdict": "n/a", "examples": 0,
                              "reason": "not offered (it): no points either way"})
    caps = {"column_gather_output": [True, False], "row_input_is_parallel": [True, False], "dtypes": ["float32"],
            "uneven_shards": False}
    return {"status": "done", "describe": {"name": "x", "capabilities": caps}, "cells": cells}


def test_the_maximum_is_the_graders_whatever_a_submission_offers():
    """The attack: a layer that does nothing, offering every family whose forgeable facts it passes
    (in-place flags, a collective count). Before: its self-reported family properties scored and its
    maximum grew with what it offered; now they are worth nothing and the maximum is fixed."""
    weights = load_weights()
    # only the forgeable facts of every family pass, nothing else does
    forger = _result(set())
    for cell in forger["cells"]:
        if cell["property"] in weights.self_reported:
            cell.update(verdict="pass", reason=None)
    nothing = _result(set())
    for contract in (None, {"variants": list(weights.required), **EVERY_FAMILY}):
        a, b = score_submission(forger, weights, contract), score_submission(nothing, weights, contract)
        assert a["total"] == b["total"] == 0 and a["max"] == b["max"] == weights.maximum(contract), (a["total"], a["max"])
        for p in weights.self_reported:
            assert a["properties"][p]["verdict"] == "pass" and a["properties"][p]["max"] == 0, p
    # with every family scored, one that offers them all gets the whole maximum; one that offers none
    # scores 0 of their points, the same maximum, each such property "not-declared"
    contract = {"variants": list(weights.required), **EVERY_FAMILY}
    full = score_submission(_result(set(families())), weights, contract)
    assert full["total"] == full["max"] == weights.maximum(contract) > weights.total
    only_layers = score_submission(_result({"linear"}), weights, contract)
    assert only_layers["max"] == full["max"] and only_layers["total"] == weights.total
    assert only_layers["properties"]["mlp_output_matches_the_dense_mlp"]["verdict"] == "not-declared"
    # without a contract the linear layers alone are scored: other families are shown for no points
    shown = score_submission(_result(set(families())), weights)
    assert shown["max"] == weights.total and shown["total"] == weights.total
    assert shown["properties"]["mlp_output_matches_the_dense_mlp"]["verdict"] == "pass"
    assert shown["properties"]["mlp_output_matches_the_dense_mlp"]["max"] == 0


@pytest.mark.parametrize("bad", ['scored = ["nope"]', 'scored = "mlp"'])
def test_a_bad_families_list_is_one_line(tmp_path, bad):
    from tpconform.grading.scoring import WeightsError

    path = tmp_path / "w.toml"
    path.write_text(f"[families]\n{bad}\n")
    with pytest.raises(WeightsError, match="scored must be a list of families"):
        load_weights(str(path))
