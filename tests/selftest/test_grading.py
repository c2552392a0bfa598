"""Grading mode end to end: a fixture folder with the reference, seeded bugs and hostile submissions
is graded by ``tpconform grade`` (interrupted once, then resumed), and every score is checked; the
HTML matrix is rendered in headless chromium and its colours are checked in a screenshot."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from tpconform.families.linear.verdict import MEASURED_OUTSIDE
from tpconform.grading import bwrap
from tpconform.grading.report import COLOURS
from tpconform.grading.scoring import load_weights, score_submission

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures", "grading")
# float32 only (CI time: half the cases of every dtype): what these fixtures show does not depend on the dtype,
# and tests/selftest/test_default_run.py and test_grading_zoo.py grade every dtype at the defaults
OPTIONS = ["--world-sizes=2", "--dtypes=float32", "--examples=3", "--timeout=15", "--seed=0", "--jobs=2", "--no-progress"]
CORE = ("shards_rebuild_the_dense_weight", "output_matches_the_dense_layer", "ranks_agree_on_the_output",
        "output_shape_and_dtype_match_nn_linear", "input_grad_matches_the_dense_layer",
        "weight_grad_matches_the_dense_layer", "bias_grad_matches_the_dense_layer", "inputs_are_left_untouched")
# the simple-module convention is judged on two variants: "partial" = one of the two passed
EXPECTED = {
    "reference_copy": {},
    "adapter_pkg": {},
    # the second call and the step after the update are as wrong as the first output
    "bug_bias_every_rank": {"output_matches_the_dense_layer": "partial", "repeated_calls_are_independent": "partial",
                            "training_step_matches_the_dense_layer": "partial"},
    "bug_no_grad_allreduce": {"input_grad_matches_the_dense_layer": "partial"},
    "bug_inplace_input": {"inputs_are_left_untouched": "partial", "weight_grad_matches_the_dense_layer": "partial"},
    "hostile_equal_subclass": {p: "fail" for p in ("output_matches_the_dense_layer", "input_grad_matches_the_dense_layer",
                                                   "weight_grad_matches_the_dense_layer",
                                                   "bias_grad_matches_the_dense_layer")},
    "hostile_fake_results": {p: "partial" for p in ("output_matches_the_dense_layer",
                                                    "input_grad_matches_the_dense_layer",
                                                    "weight_grad_matches_the_dense_layer",
                                                    "bias_grad_matches_the_dense_layer")},
    "hostile_memory_hog": {p: "partial" for p in CORE},  # the column layer raises MemoryError, the row layer is right
    # a crash or hang costs its own variant only: the other layer is right and keeps its points
    "hostile_exit": {p: "partial" for p in CORE},
    "hostile_hang": {p: "partial" for p in CORE},
    "hostile_tamper": {p: "cheat" for p in CORE},
    "notes.txt": {p: "error" for p in CORE},
}
FRACTION = {"pass": 1.0, "partial": 0.5}
# graded in the bubblewrap sandbox where it can run, else explicitly without it (the report says which)
UNSANDBOXED = [] if bwrap.unavailable() is None else ["--unsandboxed"]


def _tamper_verdict():
    """In the sandbox (and without root) the read-only snapshot refuses hostile_tamper's write, so it
    cannot load; only an unsandboxed root grader's write lands, and is caught as a cheat."""
    return "cheat" if UNSANDBOXED and os.geteuid() == 0 else "error"


def grade(suite, out, *extra, interrupt_after_first=False):
    """Run ``tpconform grade`` on the fixtures from ``suite``, a private copy of the suite (so edits to
    the checkout while the test runs do not look like a new suite version to the resume check)."""
    cmd = [sys.executable, "-m", "tpconform", "grade", FIXTURES, "--out", out, *OPTIONS, *UNSANDBOXED, *extra]
    env = {**os.environ, "PYTHONPATH": suite}
    if not interrupt_after_first:
        return subprocess.run(cmd, cwd=suite, env=env, capture_output=True, text=True, timeout=600, check=False)
    # SIGINT at its default in the grader, as in a terminal (a test run started in the background by a shell
    # without job control ignores it, and the grader would inherit that)
    proc = subprocess.Popen(cmd, cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = os.path.join(out, "submissions")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.isdir(results) and any(f.endswith(".json") for f in os.listdir(results)):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)  # seconds under no load; a loaded machine's margin
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    suite, out = str(base / "suite"), str(base / "report")
    for pkg in ("conformance", "impls", "strategies"):
        shutil.copytree(os.path.join(ROOT, pkg), os.path.join(suite, pkg),
                        ignore=shutil.ignore_patterns("__pycache__"))
    first = grade(suite, out, interrupt_after_first=True)
    assert first.returncode == 130, first.stdout + first.stderr
    assert "run the same command again to resume" in first.stderr
    kept = len(os.listdir(os.path.join(out, "submissions")))
    second = grade(suite, out, "--gradescope")
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    return {"out": out, "suite": suite, "report": report, "kept": kept, "second": second}


def _by_name(report):
    return {s["name"]: s for s in report["submissions"]}


def test_an_interrupted_run_resumes_without_regrading_finished_submissions(graded):
    assert graded["kept"] >= 1
    assert f"reused {graded['kept']} finished earlier" in graded["second"].stdout


@pytest.mark.parametrize("name", EXPECTED)
def test_every_fixture_gets_its_expected_score(graded, name):
    report, weights = graded["report"], load_weights()
    sub = _by_name(report)[name]
    # unsandboxed, the check measured outside the candidate is not available: worth nothing either way
    unmeasured = sum(weights.points[p] for p in MEASURED_OUTSIDE) if UNSANDBOXED else 0
    assert sum(sub["properties"][p]["max"] for p in weights.points) == weights.total - unmeasured
    for prop in CORE:
        verdict = EXPECTED[name].get(prop, "pass")
        got = sub["properties"][prop]
        if name == "hostile_tamper":
            verdict = _tamper_verdict()
        assert got["verdict"] == verdict, (prop, got)
        assert got["score"] == weights.points[prop] * FRACTION.get(verdict, 0.0), (prop, got)
        if verdict != "pass":
            assert got["reason"], (prop, got)
    assert sub["total"] == pytest.approx(sum(p["score"] for p in sub["properties"].values()))
    if name in ("reference_copy", "adapter_pkg"):
        assert sub["total"] == sub["max"]
    if any(v in ("cheat", "error") for v in EXPECTED[name].values()):
        assert sub["total"] == 0 and sub["why"]
    if name in ("hostile_exit", "hostile_hang"):  # the variant that stopped is named, and costs only itself
        stopped = "column-gathered" if name == "hostile_exit" else "row-sliced-input"
        for prop in CORE:
            got = sub["properties"][prop]
            assert got["variants"][stopped]["verdict"] == ("crash" if name == "hostile_exit" else "hang"), got
            assert got["reason"].startswith(stopped) and got["passed_variants"], got
        assert 0 < sub["total"] < sub["max"] and sub["why"]


def test_the_report_says_why_and_gives_minimal_examples(graded):
    subs = _by_name(graded["report"])
    assert "exited" in subs["hostile_exit"]["why"]
    assert "timed out" in subs["hostile_hang"]["why"]
    assert ("compare.py" if _tamper_verdict() == "cheat" else "could not be loaded") in subs["hostile_tamper"]["why"]
    assert "not a .py file" in subs["notes.txt"]["why"]
    cell = subs["bug_bias_every_rank"]["properties"]["output_matches_the_dense_layer"]["variants"]["row-sliced-input"]
    assert cell["verdict"] == "fail"  # shrunk, or an anchor case (already small: grading.one.grade_variant)
    assert "world_size=2" in cell["minimal_example"]["token"] and "bias=1" in cell["minimal_example"]["token"]
    assert cell["minimal_example"]["replay"].startswith("python -m tpconform replay --impl=" + FIXTURES)
    err = cell["errors"][0]
    assert err["quantity"] == "output" and err["max_abs_error"] > err["tolerance"] > 0
    assert "likely cause: the output is off by 1× the bias" in cell["failure"]
    run = graded["report"]["run"]
    assert run["seed"] == 0 and run["profile"] == "ci" and run["torch_version"] and len(run["suite_sha256"]) == 64
    with open(os.path.join(graded["out"], "summary.md")) as fh:
        summary = fh.read()
    assert "| bug_bias_every_rank |" in summary and "## Where points were lost" in summary
    with open(os.path.join(graded["out"], "gradescope", "bug_bias_every_rank", "results.json")) as fh:
        gs = json.load(fh)
    applicable = [p for p, v in subs["bug_bias_every_rank"]["properties"].items() if v["verdict"] != "n/a" or v["max"]]
    assert gs["score"] == subs["bug_bias_every_rank"]["total"] and sorted(t["name"] for t in gs["tests"]) == sorted(applicable)
    assert all(t["status"] == ("passed" if subs["bug_bias_every_rank"]["properties"][t["name"]]["verdict"] == "pass"
                               else "failed") for t in gs["tests"])


def test_the_same_seed_gives_the_same_scores_and_weights_need_no_regrading(graded, tmp_path):
    out = str(tmp_path / "again")
    shutil.copytree(graded["out"], out)
    os.remove(os.path.join(out, "submissions", "bug_bias_every_rank.json"))
    weights = tmp_path / "w.toml"
    weights.write_text("[weights]\noutput_matches_the_dense_layer = 40\n")
    r = grade(graded["suite"], out, f"--weights={weights}")
    assert r.returncode == 0 and "graded 1 submission(s)" in r.stdout, r.stdout + r.stderr[-2000:]
    with open(os.path.join(out, "report.json")) as fh:
        again = _by_name(json.load(fh))
    before = _by_name(graded["report"])
    stopped = ("crash", "hang", "timeout")  # a variant cut short by the machine's load, not by the seed

    def cut_short(p: dict) -> bool:
        return any(c.get("verdict") in stopped for c in p.get("variants", {}).values())

    for name, sub in before.items():
        for prop, v in sub["properties"].items():
            w = again[name]["properties"][prop]
            if cut_short(v) or cut_short(w):
                continue
            assert w["verdict"] == v["verdict"], (name, prop, w["variants"], v["variants"])
    assert again["bug_bias_every_rank"]["properties"]["output_matches_the_dense_layer"]["score"] == 20.0


def test_a_submission_past_its_time_limit_is_killed_and_loses_what_it_did_not_finish(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    shutil.copy(os.path.join(FIXTURES, "hostile_hang.py"), folder)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(folder), "--out", str(tmp_path / "out"),
                        "--world-sizes=2", "--examples=2", "--timeout=400", "--time-limit=8", "--no-progress", *UNSANDBOXED],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    # killed at its 8 s limit, not at the 400 s example timeout (the margin is for a loaded machine)
    assert time.monotonic() - started < 200
    with open(tmp_path / "out" / "report.json") as fh:
        sub = json.load(fh)["submissions"][0]
    # a variant finished before the limit keeps its points (a crash or hang costs its own variant only)
    assert sub["status"] == "timeout" and sub["total"] < sub["max"] and "time limit" in sub["why"], sub


def test_scores_of_a_submission_that_ran_past_its_time_limit():
    """The variants it finished keep their points; the one it never reached scores 0 (time-out)."""
    weights = load_weights()
    cells = [{"property": p, "variant": "column-gathered", "verdict": "pass", "reason": None} for p in weights.points]
    caps = {"column_gather_output": [True], "row_input_is_parallel": [True], "uneven_shards": True, "dtypes": ["float32"]}
    result = {"status": "timeout", "describe": {"name": "x", "capabilities": caps}, "cells": cells}
    scored = score_submission(result, weights)
    assert scored["total"] == pytest.approx(weights.total / 2)
    assert {scored["properties"][p]["verdict"] for p in weights.points if weights.points[p]} == {"partial"}
    assert all(scored["properties"][p]["variants"]["row-sliced-input"]["verdict"] == "timeout" for p in weights.points)
    assert "time limit" in scored["why"]
    # under a contract, a variant outside it never reached is not counted either (it is never scored)
    contract = {"variants": ["column-gathered", "row-sliced-input"]}
    wide = {**result, "describe": {"name": "x", "capabilities": {**caps, "column_gather_output": [True, False]}}}
    assert score_submission(wide, weights, contract)["total"] == pytest.approx(weights.total / 2)
    result["cells"] = []  # nothing finished: every variant timed out
    assert {p["verdict"] for p in score_submission(result, weights)["properties"].values()} >= {"timeout"}
    assert score_submission(result, weights)["total"] == 0


@pytest.mark.parametrize("status, cells_of", [
    ("done", lambda p: [{"property": p, "variant": v, "verdict": "pass", "reason": None}
                        for v in ("column-gathered", "row-sliced-input")]),
    ("timeout", lambda p: [{"property": p, "variant": "column-gathered", "verdict": "pass", "reason": None}]),
])
def test_without_the_sandbox_every_submission_has_one_maximum(status, cells_of):
    """Unsandboxed, a check measured outside the candidate is measured for no submission: out of every maximum,
    whether its variants passed, stopped early (judged as a time-out) or never loaded."""
    weights = load_weights()
    outside = sum(weights.points[p] for p in MEASURED_OUTSIDE)
    assert outside > 0
    caps = {"column_gather_output": [True], "row_input_is_parallel": [True], "uneven_shards": True, "dtypes": ["float32"]}
    result = {"status": status, "describe": {"name": "x", "capabilities": caps},
              "cells": [c for p in weights.points for c in cells_of(p)]}
    maxima = {score_submission(r, weights, sandboxed=False)["max"]
              for r in (result, {"unusable": "it raised at import"}, {"problem": "not a .py file"})}
    assert maxima == {weights.total - outside}
    scored = score_submission(result, weights, sandboxed=False)
    assert all(scored["properties"][p]["verdict"] == "n/a" and scored["properties"][p]["max"] == 0
               for p in MEASURED_OUTSIDE)
    assert score_submission(result, weights)["max"] == weights.total  # sandboxed: every check counts


@pytest.mark.parametrize("stopped", ["crash", "hang"])
def test_a_crash_or_hang_in_one_variant_costs_that_variant_only(stopped):
    """A row layer that crashed (or hung) does not take the column layer's points with it: each
    property scores weight x passed / judged, the stopped variant judged and not passed."""
    weights = load_weights()
    cells = [{"property": p, "variant": "column-gathered", "verdict": "pass", "reason": None} for p in weights.points]
    cells += [{"property": p, "variant": "row-sliced-input", "verdict": stopped, "reason": "rank 1 died"}
              for p in weights.points]
    caps = {"column_gather_output": [True], "row_input_is_parallel": [True], "uneven_shards": True, "dtypes": ["float32"]}
    scored = score_submission({"status": "done", "describe": {"name": "x", "capabilities": caps}, "cells": cells},
                              weights)
    assert scored["total"] == pytest.approx(weights.total / 2)
    for prop, w in weights.points.items():
        got = scored["properties"][prop]
        assert got["score"] == pytest.approx(w / 2) and got["verdict"] == "partial", got
        assert got["reason"].startswith("row-sliced-input: rank 1 died"), got
    assert scored["why"] == "row-sliced-input: rank 1 died"
    both = [{**c, "verdict": stopped} for c in cells]  # every variant stopped: nothing to keep
    scored = score_submission({"status": "done", "describe": {"name": "x", "capabilities": caps}, "cells": both},
                              weights)
    assert scored["total"] == 0 and {p["verdict"] for p in scored["properties"].values()} >= {stopped}


@pytest.mark.parametrize("args, says", [
    (["/no/such/folder", "--out", "/tmp/x"], "no such folder"),
    ([FIXTURES, "--out", "/tmp/x", "--weights", "/no/such.toml"], "cannot read it"),
    ([FIXTURES, "--out", "/tmp/x", "--world-sizes", "0"], "--world-sizes=0"),
])
def test_bad_input_gets_one_clear_line_and_a_nonzero_exit(args, says):
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", *args], cwd=ROOT, capture_output=True, check=False,
                       text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 4 and len(lines) == 1 and says in lines[0], r.stderr


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _headless(*args):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the HTML check needs a real browser")
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", *args]


def test_the_html_matrix_renders_in_a_real_browser(graded, tmp_path):
    pil = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot (pip install pillow)")
    page = "file://" + os.path.join(graded["out"], "index.html")
    shot = tmp_path / "matrix.png"
    base = _headless(f"--user-data-dir={tmp_path / 'profile'}")
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1600,1000", page], capture_output=True, timeout=120, check=False)
    dom = subprocess.run([*base, "--dump-dom", page], capture_output=True, text=True, timeout=120,
                         check=False).stdout
    report = graded["report"]
    props = [p["name"] for p in report["properties"]]
    # the DOM the browser built holds one row per submission, one verdict cell per property
    rows = re.findall(r'<tr data-submission="([^"]+)">(.*?)</tr>', dom, re.DOTALL)
    assert [name for name, _ in rows] == [s["name"] for s in report["submissions"]]
    for (name, row), sub in zip(rows, report["submissions"]):
        assert re.findall(r'data-verdict="([^"]+)"', row) == [sub["properties"][p]["verdict"] for p in props], name
    # and the screenshot shows each verdict's colour over whole cells (a cell is at least 70×40 px); a
    # property worth no points is greyed out instead (its verdict as a word, never a coloured "0")
    image = pil.open(shot).convert("RGB")
    counts = {}
    for count, rgb in image.getcolors(maxcolors=1 << 20):
        counts[rgb] = counts.get(rgb, 0) + count
    # (unsandboxed, a check measured outside the candidate is worth nothing in this run: greyed out too)
    scored = [p for p, w in zip(props, report["properties"]) if w["weight"] and not (UNSANDBOXED and p in MEASURED_OUTSIDE)]
    shown = {s["properties"][p]["verdict"] for s in report["submissions"] for p in scored}
    # (a crash or hang costs its own variant only: the fixtures that crash or hang in one variant show partial)
    assert {"pass", "partial", "fail", "error"} <= shown
    for verdict in shown:
        cells = sum(s["properties"][p]["verdict"] == verdict for s in report["submissions"] for p in scored)
        rgb = tuple(int(COLOURS[verdict][i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) >= cells * 70 * 40 * 0.6, (verdict, COLOURS[verdict], counts.get(rgb, 0))
