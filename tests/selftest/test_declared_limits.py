"""What a library cannot do, declared (``impls/protocol.Capabilities``): forward-only layers
(``backward=False``), merged layers over equal blocks only (``equal_blocks``) and a subset of the
collective primitives (``primitives``). Each is checked on what it declares and only on that: the
rest is skipped with its reason in pytest and scores 0 in grading (never a pass, never out of the
maximum); each limit's seeded bug (``impls/zoo``) is found once declared, and hidden without it; the
correct impls of ``impls/limited.py`` pass; a layer that declares everything still gets every check."""

import types

import pytest
from hypothesis import HealthCheck, find, given, settings
from tpconform.engine.suite import NotDeclared, Suite, declared_limits
from tpconform.families.linear.case import FORWARD_STAGES, LayerCase
from tpconform.families.linear.family import FAMILY as LINEAR
from tpconform.families.merged.case import MergedCase
from tpconform.families.merged.strategy import merged_cases
from tpconform.families.registry import families
from tpconform.grading import records
from tpconform.impls.limited import ForwardOnlyImpl, TwoPrimitivesImpl
from tpconform.impls.protocol import OVERRIDABLE, Capabilities
from tpconform.impls.simple_module import SimpleModuleImpl
from tpconform.strategies import VARIANTS

FIXTURE = "tests.selftest.fixtures.limits_undeclared"
FORWARD_ONLY, EQUAL_BLOCKS = "reference-forward-only", "reference-equal-blocks"
TWO_PRIMITIVES = "reference-two-primitives"
OUTPUT, INPUT_GRAD = "output_matches_the_dense_layer", "input_grad_matches_the_dense_layer"
SHARDS = "merged_column_shards_hold_each_blocks_slice"
FEW = settings(max_examples=4, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
# one token into a row layer at 2 ranks: the one-token "decode" path of bug-inference-decode-skips-all-reduce
ONE_TOKEN = LayerCase(kind="row", world_size=2, in_features=4, out_features=3, batch_shape=(1,), dtype="float64",
                      bias=True, input_is_parallel=False)


def _forward(fam) -> list[str]:
    return [p for p, prop in fam.properties.items() if not prop.reads_backward]


# -- the declaration ------------------------------------------------------------------------------------
def test_the_limits_are_declared_per_family_and_refused_when_malformed():
    caps = Capabilities(backward=False, families={"merged": {"equal_blocks": True, "backward": True},
                                                  "primitives": {"primitives": ["copy_to", "reduce_from"]}})
    assert not caps.of("linear").backward and caps.of("merged").backward and caps.of("merged").equal_blocks
    assert caps.of("primitives").primitives == ("copy_to", "reduce_from") and not caps.of("linear").equal_blocks
    assert Capabilities.from_dict(caps.as_dict()) == caps and {"backward", "equal_blocks", "primitives"} <= OVERRIDABLE
    older = {k: v for k, v in Capabilities().as_dict().items() if k not in ("backward", "equal_blocks", "primitives")}
    assert Capabilities.from_dict(older) == Capabilities()  # a description without them declares everything
    module = types.SimpleNamespace(ColumnParallelLinear=object, RowParallelLinear=object,
                                   TP_CAPABILITIES={"backward": False, "families": {"merged": {"equal_blocks": True}}})
    declared = SimpleModuleImpl(module).capabilities  # a simple-module file declares them the same way
    assert not declared.backward and declared.of("merged").equal_blocks and not declared.of("mlp").backward
    for bad, says in (({"primitives": ()}, "primitives"), ({"primitives": ("copy",)}, "primitives"),
                      ({"backward": "no"}, "backward: expected True or False"),
                      ({"families": {"merged": {"equal_blocks": 1}}}, "equal_blocks: expected True or False")):
        with pytest.raises(ValueError, match=says):
            Capabilities(**bad)


def test_a_layer_declaring_everything_gets_every_check(tp_pool):
    suite = Suite("reference", tp_pool)
    assert declared_limits(suite) == []
    for name, fam in families().items():
        for variant in fam.variants():
            assert all(fam.not_declared(suite, variant, p) is None for p in fam.properties), (name, variant)


def test_the_header_says_what_is_not_checked_and_why(tp_pool):
    forward_only = "\n".join(declared_limits(Suite(FORWARD_ONLY, tp_pool)))
    assert "linear: forward-only (backward=False)" in forward_only and INPUT_GRAD in forward_only
    assert "training_step_matches_the_dense_layer" in forward_only and OUTPUT not in forward_only
    assert declared_limits(Suite(EQUAL_BLOCKS, tp_pool)) == [
        "merged: equal blocks only (capability equal_blocks): blocks of different sizes (grouped-query "
        "attention's smaller K and V) not drawn"]
    assert declared_limits(Suite(TWO_PRIMITIVES, tp_pool)) == [
        "primitives: offers copy_to, reduce_from only (capability primitives): scatter_to, gather_from not "
        "offered, not checked"]


# -- forward-only layers ------------------------------------------------------------------------------
def test_a_forward_only_layer_is_judged_on_its_forward_alone(tp_pool):
    suite = Suite(FORWARD_ONLY, tp_pool)
    variant = VARIANTS[2]  # row-full-input
    skipped = {p for p in LINEAR.properties if LINEAR.not_applicable(suite, variant, p)}
    assert INPUT_GRAD in skipped and "training_step_matches_the_dense_layer" in skipped
    assert set(LINEAR.properties) - skipped == set(_forward(LINEAR)) >= {OUTPUT, "repeated_calls_are_independent"}
    assert "backward=False" in LINEAR.not_applicable(suite, variant, INPUT_GRAD)
    ev, found = suite.judged(ONE_TOKEN, _forward(LINEAR))
    assert ev.outcome.stages == FORWARD_STAGES and all(v == [] for v in found.values()), found
    with pytest.raises(NotDeclared, match="forward-only"):  # never judged, so never passed
        suite.checked(ONE_TOKEN, INPUT_GRAD)
    with pytest.raises(pytest.skip.Exception, match="reads a backward pass"):
        suite.check(ONE_TOKEN, INPUT_GRAD)


def test_a_forward_only_bug_shows_once_declared_and_the_layer_never_passes_a_backward(tp_pool):
    found = Suite("bug-inference-decode-skips-all-reduce", tp_pool).violations(ONE_TOKEN, OUTPUT)
    assert found and found[0].quantity == "output", found
    # declaring a backward it does not have, the same layer only crashes: the bug stays hidden, and
    # no gradient property passes
    undeclared = Suite(f"{FIXTURE}:ForwardOnlyDeclaringBackward", tp_pool)
    for prop in (OUTPUT, INPUT_GRAD):
        found = undeclared.violations(ONE_TOKEN, prop)
        assert found and found[0].quantity == "run" and "backward is not supported" in found[0].message, found


@pytest.mark.parametrize("name", sorted(families()))
def test_the_correct_forward_only_impl_passes_every_forward_property(name, tp_pool):
    fam, suite = families()[name], Suite(FORWARD_ONLY, tp_pool, world_sizes=(1, 2, 4))
    for variant in fam.variants():
        props = [p for p in _forward(fam) if not fam.not_applicable(suite, variant, p)]

        @FEW
        @given(case=suite.cases(variant, name))
        def conforms(case):
            ev, found = suite.judged(case, props)
            assert all(v == [] for v in found.values()), found

        if props:
            before = suite.examples
            conforms()
            assert suite.examples > before, (name, variant)  # judged, not skipped


# -- merged layers over equal blocks only ---------------------------------------------------------------
def test_equal_blocks_are_all_that_is_drawn_and_they_shrink_to_the_simplest():
    @settings(max_examples=60, database=None, deadline=None)
    @given(case=merged_cases(world_sizes=(1, 2, 3), equal_blocks=True))
    def equal(case):
        assert len(case.blocks) >= 2 and len(set(case.blocks)) == 1 and case.blocks[0] % case.world_size == 0

    equal()
    simplest = find(merged_cases(world_sizes=(2, 3), equal_blocks=True), lambda c: True)
    assert simplest.blocks == (2, 2) and simplest.world_size == 2


def test_an_equal_block_bug_shows_once_declared_and_is_hidden_without(tp_pool):
    equal = MergedCase(world_size=2, in_features=3, blocks=(4, 4), batch_shape=(2,), dtype="float64", bias=True)
    unequal = MergedCase(world_size=2, in_features=3, blocks=(4, 2), batch_shape=(2,), dtype="float64", bias=True)
    declared = Suite("bug-merged-packed-rows-strided", tp_pool)
    found = declared.violations(equal, SHARDS)
    assert found and found[0].quantity == "weight shard", found
    # undeclared, the strategy draws unequal blocks, which the layer refuses to build: every search
    # shrinks to that refusal, and the strided split is never the failure reported
    undeclared = Suite(f"{FIXTURE}:EqualBlocksUndeclared", tp_pool, world_sizes=(2,))
    found = undeclared.violations(unequal, SHARDS)
    assert found and found[0].quantity == "construction" and "equal size" in found[0].message, found
    shrunk = find(undeclared.cases(None, "merged"), lambda c: bool(undeclared.violations(c, SHARDS)),
                  settings=settings(max_examples=30, derandomize=True, database=None, deadline=None))
    assert len(set(shrunk.blocks)) > 1 and undeclared.violations(shrunk, SHARDS)[0].quantity == "construction"


def test_the_correct_equal_blocks_impl_passes_and_is_drawn_equal_blocks_only(tp_pool):
    fam, suite = families()["merged"], Suite(EQUAL_BLOCKS, tp_pool, world_sizes=(1, 2, 3))

    @settings(FEW, max_examples=8)
    @given(case=suite.cases(None, "merged"))
    def conforms(case):
        assert len(set(case.blocks)) == 1
        ev, found = suite.judged(case, list(fam.properties))
        assert all(v == [] for v in found.values()), found

    conforms()


# -- a subset of the primitives ---------------------------------------------------------------------------
def test_primitives_not_offered_are_skipped_never_passed_and_the_offered_pass(tp_pool):
    fam, suite = families()["primitives"], Suite(TWO_PRIMITIVES, tp_pool, world_sizes=(1, 2, 3))
    for primitive in ("scatter_to", "gather_from"):
        for prop in fam.properties:
            assert "not offered" in fam.not_applicable(suite, primitive, prop)
        case = find(suite.cases(primitive, "primitives"), lambda c: True)
        with pytest.raises(pytest.skip.Exception, match="declares the primitives copy_to, reduce_from only"):
            suite.check(case, "primitive_forward_matches_its_dense_meaning")
    for primitive in ("copy_to", "reduce_from"):
        assert all(fam.not_applicable(suite, primitive, p) is None for p in fam.properties)

        @FEW
        @given(case=suite.cases(primitive, "primitives"))
        def conforms(case):
            ev, found = suite.judged(case, list(fam.properties))
            assert all(v == [] for v in found.values()), found

        conforms()


# -- grading ---------------------------------------------------------------------------------------------
def _cells(props_and_variants, verdict_of) -> list[dict]:
    return [{"property": p, "variant": v, "verdict": verdict_of(p, v), "reason": None if verdict_of(p, v) == "pass"
             else "declared"} for p, v in props_and_variants]


def test_grading_scores_what_is_not_declared_as_zero_out_of_the_same_maximum():
    from tpconform.grading.catalog import FAMILY_OF, VARIANTS_OF
    from tpconform.grading.report import not_checked, undeclared
    from tpconform.grading.scoring import load_weights, score_submission

    weights = load_weights()
    contract = {"variants": list(weights.required), "families": sorted(families())}
    forward = set(_forward(LINEAR)) | {p for name, fam in families().items() if name != "linear" for p in _forward(fam)}
    cells = _cells([(p, v) for p in weights.points for v in VARIANTS_OF[p]],
                   lambda p, v: "n/a" if (p, v) == ("ranks_agree_on_the_output", "column-sharded-output")
                   else "pass" if p in forward else "not-declared")
    cells += _cells([(p, v) for p in weights.family_points for v in VARIANTS_OF[p]],
                    lambda p, v: "pass" if p in forward else "not-declared")
    result = {"status": "done", "describe": records.describe(ForwardOnlyImpl().describe(), keep_known=True), "cells": cells}
    for scored, maximum in ((score_submission(result, weights), weights.maximum()),
                            (score_submission(result, weights, contract), weights.maximum(contract))):
        assert scored["max"] == maximum  # the same as a submission declaring everything
        for prop, v in scored["properties"].items():
            if prop in forward:
                assert v["score"] == v["max"], (prop, v)
            elif FAMILY_OF[prop] == "linear" or scored["max"] > weights.total:
                assert v["verdict"] == "not-declared" and v["score"] == 0, (prop, v)
                assert v["max"] == (weights.points | weights.family_points)[prop], (prop, v)  # in the maximum
        lost = sum(v["max"] - v["score"] for v in scored["properties"].values())
        assert scored["total"] == pytest.approx(scored["max"] - lost) and lost > 0
        # the report says what was not checked, and never calls a declared variant undeclared
        assert undeclared(scored) == [] and INPUT_GRAD in not_checked(scored) and OUTPUT not in not_checked(scored)
    # two of the four primitives offered: half of each primitive property's points, the rest "not-declared"
    offered = ("copy_to", "reduce_from")
    cells = _cells([(p, v) for p in weights.family_points for v in VARIANTS_OF[p]],
                   lambda p, v: "not-declared" if FAMILY_OF[p] == "primitives" and v.split("/")[1] not in offered
                   else "pass")
    scored = score_submission({"status": "done", "describe": records.describe(TwoPrimitivesImpl().describe(), keep_known=True), "cells": cells},
                              weights, contract)
    prop = scored["properties"]["primitive_forward_matches_its_dense_meaning"]
    assert prop["verdict"] == "partial" and prop["max"] > 0 and prop["score"] == pytest.approx(prop["max"] / 2), prop
    assert prop["variants"]["primitives/scatter_to"]["verdict"] == "not-declared", prop
    assert not_checked(scored)["primitive_forward_matches_its_dense_meaning"] == ["primitives/scatter_to",
                                                                                  "primitives/gather_from"]


def test_the_grader_emits_not_declared_cells(monkeypatch):
    """What a capability leaves out becomes a "not-declared" cell, never an "n/a" (worth nothing)."""
    from tpconform.grading import one

    grader = one.Grader(TWO_PRIMITIVES, seed_value=0, examples=1, world_sizes=[2], dtypes=["float32"], timeout_s=20,
                        emit=lambda record: cells.append(record["cell"]))
    cells: list = []
    # every example "runs" without a failure: what is judged here is which cells are searched at all
    monkeypatch.setattr(grader, "evidence", lambda case: types.SimpleNamespace(crash=None))
    monkeypatch.setattr(grader, "failures", lambda case, props: {})
    grader.grade_family(families()["primitives"])
    verdicts = {c["variant"]: c["verdict"] for c in cells}
    assert verdicts == {"primitives/copy_to": "pass", "primitives/reduce_from": "pass",
                        "primitives/scatter_to": "not-declared", "primitives/gather_from": "not-declared"}, cells
    forward_only = one.Grader(FORWARD_ONLY, seed_value=0, examples=1, world_sizes=[2], dtypes=["float32"],
                              timeout_s=20, emit=lambda record: None)
    assert one.not_applicable(forward_only.suite, VARIANTS[0], INPUT_GRAD)[0] == "not-declared"
    assert one.not_applicable(forward_only.suite, VARIANTS[0], OUTPUT) is None
    assert "not checked, as declared: linear: forward-only (backward=False)" in forward_only.suite.narrowed()
    assert grader.suite.narrowed().startswith("not checked, as declared: primitives: offers copy_to, reduce_from")


# -- replay and the differential mode ---------------------------------------------------------------------
def test_replay_judges_a_forward_only_layer_on_its_forward_alone():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-m", "tpconform", "replay", f"--impl={FORWARD_ONLY}", ONE_TOKEN.token()],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "6 passed, 0 failed" in r.stdout, r.stdout + r.stderr
    assert f"not checked: {FORWARD_ONLY} declares its linear layers forward-only" in r.stdout


def test_the_differential_mode_compares_a_forward_only_layer_on_its_forward_alone(tp_pool):
    from tpconform.cli.differential import Differential

    report = Differential(["reference", FORWARD_ONLY, "bug-inference-decode-skips-all-reduce"], tp_pool).run_case(
        ONE_TOKEN)
    assert report.verdicts[1].unexpected == {} and OUTPUT in report.verdicts[2].unexpected, report.verdicts
    assert not set(report.verdicts[2].unexpected) - set(_forward(LINEAR)), report.verdicts[2].unexpected
    assert len(report.disagreements) == 2 and all(m.startswith("output") for m in report.disagreements), report


def test_a_forward_only_submission_is_graded_0_for_its_gradients_and_the_report_says_why(tmp_path):
    """The whole grade of one forward-only submission (a package, as a student hands it in): its forward
    properties pass, every gradient property is "not-declared" for 0 of its points, the maximum is a
    full submission's, and the summary and the student page say what was not checked."""
    import json
    import os
    import subprocess
    import sys

    from tpconform.grading.scoring import load_weights

    pkg = tmp_path / "subs" / "fwd"
    (pkg / "layers").mkdir(parents=True)
    (pkg / "tpconform.toml").write_text('impl = "layers.adapter:Impl"\n')
    (pkg / "layers" / "__init__.py").write_text("")
    (pkg / "layers" / "adapter.py").write_text(
        "from tpconform.impls.limited import ForwardOnlyImpl\n\n\nclass Impl(ForwardOnlyImpl):\n    name = 'fwd'\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(tmp_path / "subs"), "--out", str(out),
                        "--world-sizes=1-2", "--dtypes=float32", "--examples=1", "--unsandboxed", "--no-progress"],
                       cwd=root, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (sub,) = json.loads((out / "report.json").read_text())["submissions"]
    weights = load_weights()
    assert sub["max"] == weights.maximum() - weights.points["really_tensor_parallel"]  # unsandboxed: unmeasured
    for prop in weights.points:
        v = sub["properties"][prop]
        if prop in _forward(LINEAR):
            assert v["verdict"] == "pass", (prop, v)
        elif prop != "really_tensor_parallel":
            assert v["verdict"] == "not-declared" and v["score"] == 0 and v["max"] == weights.points[prop], (prop, v)
    assert sub["total"] == sum(weights.points[p] for p in _forward(LINEAR)) and sub["undeclared"] == []
    assert set(sub["not_checked"]) == set(LINEAR.properties) - set(_forward(LINEAR)) - {"really_tensor_parallel"}
    assert "not checked, as its capabilities declare" in (out / "summary.md").read_text()
    assert "Not checked, as it declares" in (out / "students" / "fwd.html").read_text()
