"""Grading against an assignment's contract (``tpconform grade --contract FILE``), with every distinct
failure listed, a crash or a wrong shape reported once, a class view and a page per student.

One folder (a correct file, seeded bugs in scope, a multi-bug file, a file wrong only beyond the
contract, a crashing file) is graded once, in the sandbox where it can run, and every assertion
reads that one report; the HTML is rendered in headless chromium."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from tpconform.families.linear.case_classes import covering_cases
from tpconform.grading import bwrap
from tpconform.grading.contract import Contract, ContractError, load_contract
from tpconform.grading.report import BAR_COLOURS, undeclared
from tpconform.grading.scoring import load_weights, score_submission
from tpconform.strategies import VARIANTS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
CONTRACT = os.path.join(FIXTURES, "contracts", "small.toml")
SUBMISSIONS = {
    "reference_copy": "grading/reference_copy.py",
    "bug_bias_every_rank": "grading/bug_bias_every_rank.py",
    "bug_no_grad_allreduce": "grading/bug_no_grad_allreduce.py",
    "hostile_exit": "grading/hostile_exit.py",
    "bug_local_shard": "grading_contract/bug_local_shard.py",
    "beyond_only": "grading_contract/beyond_only.py",
    "multi_bug": "grading_contract/multi_bug.py",
}
BIAS_BUG = "the bias is added on every rank, before the all-reduce"
GRAD_BUG = "the backward all-reduce of the input grad is missing"
RAISES_1D = "ValueError: expected a batch of inputs"
UNSANDBOXED = [] if bwrap.unavailable() is None else ["--unsandboxed"]


def _grade(folder, out, *extra):
    cmd = [sys.executable, "-m", "tpconform", "grade", str(folder), "--out", str(out), "--examples=4",
           "--timeout=15", "--seed=0", "--jobs=2", "--no-progress", *UNSANDBOXED, *extra]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("contract")
    folder = base / "submissions"
    folder.mkdir()
    for name, rel in SUBMISSIONS.items():
        shutil.copy(os.path.join(FIXTURES, rel), folder / f"{name}.py")
    shutil.copytree(os.path.join(FIXTURES, "grading_contract", "contract_override"), folder / "contract_override")
    r = _grade(folder, base / "report", f"--contract={CONTRACT}")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    with open(base / "report" / "report.json") as fh:
        report = json.load(fh)
    return {"out": base / "report", "report": report, "subs": {s["name"]: s for s in report["submissions"]}}


def _failures(sub, scope):
    return [f for f in sub["failures"] if f["scope"] == scope]


def test_a_correct_submission_gets_full_marks_under_the_contract(graded):
    sub = graded["subs"]["reference_copy"]
    assert sub["total"] == sub["max"] and not _failures(sub, "contract"), sub["failures"]
    assert graded["report"]["run"]["contract"]["name"] == "self-test assignment"
    # every class of the contract (world size x bias x input rank) was met on every variant it declares
    assert set(sub["coverage"]) == {"column-gathered", "row-sliced-input"}
    assert all(met == total == 2 * 2 * 2 for met, total in sub["coverage"].values()), sub["coverage"]


@pytest.mark.parametrize("name, cause", [("bug_bias_every_rank", BIAS_BUG), ("bug_no_grad_allreduce", GRAD_BUG),
                                         ("bug_local_shard", "without an all-gather"), ("multi_bug", BIAS_BUG)])
def test_each_seeded_bug_in_scope_scores_below_full_marks(graded, name, cause):
    sub = graded["subs"][name]
    assert sub["total"] < sub["max"]
    assert any(cause in f["cause"] for f in _failures(sub, "contract")), sub["failures"]


def test_every_distinct_bug_of_a_multi_bug_submission_is_listed(graded):
    sub = graded["subs"]["multi_bug"]
    inside = [f["cause"] for f in _failures(sub, "contract")]
    beyond = [f["cause"] for f in _failures(sub, "beyond")]
    assert any(BIAS_BUG in c for c in inside) and any(GRAD_BUG in c for c in inside), inside
    assert any(RAISES_1D in c for c in beyond), beyond
    # two bugs of one property and variant are two failures, each with its own minimal example
    row = [f for f in _failures(sub, "contract") if f["variant"] == "row-sliced-input"
           and "output_matches_the_dense_layer" in f["properties"]]
    # (one raise, whatever the shape or batch it showed on: shapes are masked in a signature)
    assert sorted(f["kind"] for f in row) == ["property", "raised"], row
    raised = next(f for f in row if f["kind"] == "raised")
    assert "NotImplementedError: inputs of 3 dims or more" in raised["cause"]
    assert "batch is empty" not in (raised["hint"] or "")  # it raises on full batches of 3 dims too
    assert raised["minimal_example"]["token"] != next(f for f in row if f["kind"] == "property")["minimal_example"][
        "token"]
    for f in sub["failures"]:  # each with its own minimal example and a replay line the student can run
        assert f["minimal_example"]["token"] and f["student_replay"].startswith(
            f"python -m tpconform replay --impl=multi_bug.py {shlex.quote(f['minimal_example']['token'])}")


def test_the_contract_is_the_graders_not_the_submissions(graded):
    """contract_override carries a contract of its own (world size 1 only, in its tpconform.toml and as
    contract.toml) and declares float64 only: the grader's contract is applied, and its bias bug costs."""
    sub = graded["subs"]["contract_override"]
    assert sub["total"] < sub["max"]
    assert any(BIAS_BUG in f["cause"] for f in _failures(sub, "contract")), sub["failures"]
    assert "float32" in (sub["narrowed"] or "")  # judged on the contract's float32 though it declares float64


def test_an_out_of_contract_failure_costs_no_points_and_shows_as_beyond_the_contract(graded):
    sub = graded["subs"]["beyond_only"]
    assert sub["total"] == sub["max"]
    beyond = _failures(sub, "beyond")
    assert beyond and not _failures(sub, "contract")
    one_d = [f for f in beyond if "a 1-D input" in f["beyond_why"]]
    assert one_d and all(f["kind"] == "raised" for f in one_d), beyond
    # beyond a contract the conversion / mixed-precision stages also take the [beyond] dtypes (grading/one.py
    # ContractSuite.stage_dtypes): the same 1-D refusal then shows in a float64 stage, beyond for its dtype
    assert all(f in one_d or "dtype float64" in f["beyond_why"] for f in beyond), beyond
    assert sub["beyond"]["output_matches_the_dense_layer"]["verdict"] == "fail"
    with open(graded["out"] / sub["page"]) as fh:
        page = fh.read()
    assert "beyond the contract, no points" in page and RAISES_1D in page


def test_a_crash_is_reported_once_as_what_left_the_properties_unjudged(graded):
    sub = graded["subs"]["hostile_exit"]
    crashes = _failures(sub, "contract")
    assert [f["kind"] for f in crashes] == ["crash"] and "exited" in crashes[0]["summary"]
    assert not _failures(sub, "beyond")  # the same crash beyond the contract is not listed again
    for prop, v in sub["properties"].items():
        if v["max"] == 0 and v["verdict"] == "n/a":
            continue  # a family the contract does not grade
        cell = v["variants"]["column-gathered"]
        assert cell["verdict"] == "crash" and cell["failures"] == [crashes[0]["id"]], (prop, cell)
        assert cell["reason"].startswith("not judged") and "failure" not in cell


def test_a_wrong_output_shape_is_reported_as_the_shape_error(graded):
    sub = graded["subs"]["bug_local_shard"]
    inside = _failures(sub, "contract")
    shape = [f for f in inside if f["kind"] == "shape"]
    assert shape and all("without an all-gather" in f["cause"] for f in shape), inside
    # the grads it made unjudgeable are listed under it, with the upstream grad that was used
    assert "input_grad_matches_the_dense_layer" in shape[0]["properties"]
    assert "upstream grad used: zeros of the output's shape" in shape[0]["failure"]
    assert not [f for f in inside if f["property"] == "input_grad_matches_the_dense_layer"], inside


def test_the_class_view_counts_submissions_per_failure_signature(graded):
    rows = graded["report"]["class_view"]
    bias = [r for r in rows if r["scope"] == "contract" and BIAS_BUG in r["cause"]]
    assert len(bias) == 1
    assert sorted(bias[0]["submissions"]) == ["bug_bias_every_rank", "contract_override", "multi_bug"]
    assert bias[0]["count"] == 3 and bias[0]["of"] == len(SUBMISSIONS) + 1
    with open(graded["out"] / "summary.md") as fh:
        summary = fh.read()
    assert "## Failures common across the class" in summary
    assert f"| 3 of {len(SUBMISSIONS) + 1} | contract |" in summary


def _headless(*args):
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the HTML check needs a real browser")
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", *args]


def test_the_class_view_and_the_student_pages_render_in_a_real_browser(graded, tmp_path):
    pil = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot (pip install pillow)")
    report = graded["report"]
    base = _headless(f"--user-data-dir={tmp_path / 'profile'}")
    page = "file://" + str(graded["out"] / "index.html")
    dom = subprocess.run([*base, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=False).stdout
    table = re.search(r'<table class="classview" id="class-table">(.*?)</table>', dom, re.DOTALL)
    assert table, dom[:2000]
    shown = re.findall(r'<tr class="scope-(\w+)" data-signature="([^"]+)">', table.group(1))
    assert [(s, k) for s, k in shown] == [(r["scope"], r["signature"]) for r in report["class_view"]]
    plot = re.search(r'<svg id="class-plot".*?</svg>', dom, re.DOTALL)
    assert plot and len(re.findall(r"<rect ", plot.group(0))) == min(12, len(report["class_view"]))
    shot = tmp_path / "index.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1600,2400", page], capture_output=True,
                   timeout=120, check=False)
    counts: dict = {}
    for count, rgb in pil.open(shot).convert("RGB").getcolors(maxcolors=1 << 22):
        counts[rgb] = counts.get(rgb, 0) + count
    for scope, colour in BAR_COLOURS.items():  # each bar is at least 4×26 px; most are far wider
        bars = sum(r["scope"] == scope for r in report["class_view"][:12])
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) >= bars * 4 * 26 * 0.6, (scope, bars, counts.get(rgb, 0))
    sub = graded["subs"]["multi_bug"]
    student = subprocess.run([*base, "--dump-dom", "file://" + str(graded["out"] / sub["page"])],
                             capture_output=True, text=True, timeout=120, check=False).stdout
    assert re.findall(r'data-failure="([^"]+)"', student) == [f["id"] for f in sub["failures"]]
    assert student.count('<pre class="replay">') == len(sub["failures"])


# -- without a grading run: the contract file, its strategies, its scoring -------------------------------
MALFORMED = [
    ("world_sizes = [1, 2]\ndtypes = ['float32']\nvariants = ['column-gathered'\n", "not valid TOML"),
    ("dtypes = ['float32']\nvariants = ['column-gathered']\n", "world_sizes is missing"),
    ("world_sizes = [0]\ndtypes = ['float32']\nvariants = ['column-gathered']\n", "world sizes are 1 to"),
    ("world_sizes = [2]\ndtypes = ['float8']\nvariants = ['column-gathered']\n", "unknown ['float8']"),
    ("world_sizes = [2]\ndtypes = ['float32']\nvariants = ['column-gathered']\ndivisibility = 'maybe'\n",
     "divisibility = 'maybe'"),
    ("world_sizes = [2]\ndtypes = ['float32']\nvariants = ['column-gathered']\nbudget = 3\n", "unknown keys"),
    ("world_sizes = [2]\ndtypes = ['float32']\nvariants = ['column-gathered']\n[beyond]\nexamples = -1\n",
     "examples must be an integer"),
]


@pytest.mark.parametrize("text, says", MALFORMED)
def test_a_malformed_contract_is_refused_with_one_line_saying_why(tmp_path, text, says):
    path = tmp_path / "contract.toml"
    path.write_text(text)
    with pytest.raises(ContractError) as raised:
        load_contract(str(path))
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_grade_with_a_malformed_contract_prints_one_line_and_exits_4(tmp_path):
    path = tmp_path / "contract.toml"
    path.write_text(MALFORMED[0][0])
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", os.path.join(FIXTURES, "grading"), "--out",
                        str(tmp_path / "out"), f"--contract={path}"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, timeout=120, check=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 4 and len(lines) == 1 and "not valid TOML" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()  # nothing graded, nothing written


def test_a_contract_without_variants_grades_the_default_required_ones(tmp_path):
    """``variants`` may be left out: the required variants of weights.toml (the simple-module convention's)."""
    path = tmp_path / "contract.toml"
    path.write_text("world_sizes = [1, 2]\ndtypes = ['float32']\n")
    assert load_contract(str(path)).variants == ("column-gathered", "row-sliced-input")
    assert load_contract(str(path)).variants == load_weights().required


@pytest.mark.parametrize("path", [CONTRACT, os.path.join(ROOT, "conformance", "grading", "contracts", "course.toml"),
                                  os.path.join(ROOT, "conformance", "grading", "contracts", "benchmark.toml")])
def test_cases_are_drawn_inside_the_contract_and_beyond_it_outside(path):
    contract = load_contract(path)
    assert Contract.from_dict(json.loads(json.dumps(contract.as_dict()))) == contract
    inside_variant = next(v for v in VARIANTS if str(v) in contract.variants)
    anchors = contract.anchors(inside_variant)
    for case in anchors:
        assert contract.contains(case), case
    # the anchors meet every class of the contract: each world size x bias setting x input rank
    met = {(c.world_size, c.bias, min(len(c.batch_shape) + 1, 3)) for c in anchors}
    biases = {"both": (False, True), "with": (True,), "without": (False,)}[contract.bias]
    assert met >= {(w, b, r) for w in contract.world_sizes for b in biases for r in contract.input_ranks}
    # pytest's covering cases at the contract's world sizes and dtypes: each met, inside it or first beyond it
    beyond_anchors = contract.beyond_anchors(inside_variant)
    assert beyond_anchors and not any(contract.contains(c) for c in beyond_anchors)
    met_tokens = {c.token() for c in anchors + beyond_anchors}
    assert all(c.token() in met_tokens for c in covering_cases(inside_variant, contract.world_sizes,
                                                               list(contract.dtypes)))
    seen_outside: set = set()

    @settings(max_examples=60, database=None, suppress_health_check=list(HealthCheck), deadline=None)
    @given(inside=contract.cases(inside_variant), beyond=contract.beyond_cases(inside_variant))
    def check(inside, beyond):
        assert contract.contains(inside), contract.outside(inside)
        seen_outside.update(contract.outside(beyond))

    check()
    # each dimension the contract restricts (within [beyond]) is met outside it
    expected = ["dtype"] + (["does not divide"] if contract.divisibility == "divisible" else [])
    expected += ["input"] if set(contract.input_ranks) != {1, 2, 3} else []
    for what in expected:
        assert any(what in why for why in seen_outside), (what, seen_outside)


def test_cells_beyond_the_contract_are_worth_no_points_and_its_variants_are_required():
    weights = load_weights()
    contract = load_contract(CONTRACT).as_dict()
    caps = {"column_gather_output": [True], "row_input_is_parallel": [True], "uneven_shards": False,
            "dtypes": ["float32"]}
    cells = [{"property": p, "variant": v, "verdict": "pass", "reason": None, "examples": 3}
             for p in weights.points for v in ("column-gathered", "row-sliced-input")]
    beyond = [{**c, "verdict": "fail", "reason": "x", "scope": "beyond"} for c in cells]
    cells += [{"property": p, "variant": v, "verdict": "n/a", "reason": "not in the contract", "examples": 0}
              for p in weights.points for v in ("column-sharded-output", "row-full-input")]
    result = {"status": "done", "describe": {"name": "x", "capabilities": caps}, "cells": cells + beyond}
    scored = score_submission(result, weights, contract)
    assert scored["total"] == weights.total
    assert scored["beyond"]["output_matches_the_dense_layer"]["verdict"] == "fail"
    # a contract variant the submission does not declare counts as failed, whatever weights.toml requires
    wider = {**contract, "variants": ["column-gathered", "row-sliced-input", "row-full-input"]}
    missing = [{**c, "verdict": "not-declared", "reason": "no"} if c["variant"] == "row-full-input" else c
               for c in cells]
    scored = score_submission({**result, "cells": missing}, weights, wider)
    assert scored["total"] < weights.total
    assert undeclared(scored) == ["row-full-input"]  # the student page lists it before the failures


@pytest.mark.parametrize("divisibility, verdict", [("uneven-may-raise", "pass"), ("uneven", "fail")])
def test_the_contract_not_the_declaration_decides_whether_raising_on_uneven_dims_conforms(divisibility, verdict):
    """reference_copy declares uneven_shards=False (the simple-module convention) and raises at
    construction on every rank for dims the world size does not divide: the contract decides whether
    that is a right answer."""
    from tpconform.grading.one import Grader

    contract = Contract(name="uneven", world_sizes=(2,), dtypes=("float32",), divisibility=divisibility,
                        variants=("row-sliced-input",), bias="with", input_ranks=(2,), beyond_examples=0,
                        beyond_world_sizes=(2,), beyond_dtypes=("float32",))
    records: list = []
    grader = Grader(os.path.join(FIXTURES, "grading", "reference_copy.py"), seed_value=0, examples=2,
                    world_sizes=None, dtypes=None, timeout_s=15, emit=records.append, contract=contract)
    try:
        grader.grade_variant(VARIANTS[3])
    finally:
        grader.suite.pool.close()
    cell = next(r["cell"] for r in records if "cell" in r and r["cell"]["property"] == "output_matches_the_dense_layer")
    assert cell["verdict"] == verdict, cell
    if verdict == "fail":
        failure = next(r["failure"] for r in records if "failure" in r)
        assert failure["kind"] == "raised" and failure["case_class"].startswith("uneven dims")
        assert "the contract requires dims the world size does not divide to work" in failure["failure"]
        assert "expected (the contract: divisibility = uneven)" in failure["failure"]
