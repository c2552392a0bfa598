"""Grading's two sides and the typed records between them (``tpconform.grading.records``).

The host writes every report without importing torch (a child process builds the catalog); the
sandbox side imports no host module; a field no record definition has is refused with one line
that names it — on intake (the record is dropped, counted and said in the submission's log), on
resume (the stored result is graded again) and when scoring (``error``, never a crash of the grade)."""

import ast
import json
import os
import subprocess
import sys

import pytest
from tpconform.grading import catalog, records
from tpconform.grading.scoring import load_weights, score_submission

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRADING = os.path.join(ROOT, "conformance", "grading")
CAPS = {"column_gather_output": [True, False], "row_input_is_parallel": [False, True], "uneven_shards": True,
        "dtypes": ["float32", "float64"]}
PROP = "output_matches_the_dense_layer"


def _fixture_records() -> tuple[dict, list[dict]]:
    """A run and two stored submissions as ``tpconform grade`` keeps them: one with a failure, one not gradable."""
    example = {"token": "row:2:4:6:3:float32:b1:contiguous:1:7", "description": "a row layer", "shrunk": True,
               "replay": "python -m tpconform replay ..."}
    cells = [{"property": p, "variant": v, "verdict": "pass", "reason": None, "examples": 3}
             for p in catalog.catalog().primary_properties for v in ("column-gathered", "row-sliced-input")]
    cells[1] = {"property": cells[1]["property"], "variant": "row-sliced-input", "verdict": "fail",
                "reason": "rank 1 output: off by 1x the bias", "examples": 3, "failures": ["F4.1"],
                "failure": "property violated: output matches the dense layer", "minimal_example": example,
                "errors": [{"rank": 1, "quantity": "output", "message": "off", "max_abs_error": 0.5,
                            "max_rel_error": "inf", "worst_index": [0, 1], "elements_outside": 3, "elements": 12}]}
    failure = {"id": "F4.1", "kind": "property", "scope": "contract", "variant": "row-sliced-input",
               "property": cells[1]["property"], "properties": [cells[1]["property"]], "case_class": "divisible dims",
               "cause": "the bias is added on every rank", "summary": "rank 1 output: off", "examples": 2,
               "failure": "property violated", "beyond_why": None, "hint": None, "minimal_example": example,
               "errors": []}
    result = {"status": "done", "describe": {"name": "bug", "version": "", "capabilities": CAPS}, "unusable": None,
              "cells": cells, "failures": [failure], "seconds": 4.2, "log_tail": "some log", "sandbox": "bubblewrap",
              "dropped_records": 0, "suspicious": [{"file": "bug.py", "line": 3, "code": "import os", "why": "w"}]}
    recs = [{"name": "bug", "key": "bug", "path": "/subs/bug.py", "kind": "file", "impl": None, "sha256": "ab",
             "result": result},
            {"name": "notes.txt", "key": "notes.txt", "path": "/subs/notes.txt", "kind": "invalid", "impl": None,
             "sha256": None, "result": {"problem": "not a .py file or a package folder"}}]
    run = {"sandbox": "bubblewrap", "suite_version": "0.1.0", "suite_sha256": "x", "torch_version": "2",
           "hypothesis_version": "6", "python_version": "3", "seed": 0, "profile": "ci", "examples": 3,
           "world_sizes": "2", "dtypes": "float32", "timeout_s": 15, "time_limit_s": 900, "memory_mb": 4096,
           "sandbox_memory_mb": None, "contract": None, "seconds_grading": 1.0}
    return run, recs


WRITE = """
import json, os, sys
from tpconform.__main__ import build_parser
from tpconform.grading import cli, report
from tpconform.grading.contract import load_contract
from tpconform.grading.scoring import load_weights
# the host as `tpconform grade` starts it: its command line, a contract, the run's record, then the reports
build_parser().parse_args(["grade", "subs", "--out", "out"])
load_contract(os.path.join(os.path.dirname(cli.__file__), "contracts", "course.toml"))
cli.run_record({}, load_weights())
assert "torch" not in sys.modules, "the grading host imported torch before writing a report"
run, recs = json.load(open(sys.argv[1]))
os.makedirs(sys.argv[2])
report.write_all(sys.argv[2], {**run, "weights": load_weights().as_dict()}, recs, load_weights(), gradescope_files=True)
assert "torch" not in sys.modules, "the report writer imported torch"
print("no torch;", len(sys.modules), "modules")
"""


def _read_all(folder: str) -> dict[str, str]:
    out = {}
    for base, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(base, f)) as fh:
                out[os.path.relpath(os.path.join(base, f), folder)] = fh.read()
    return out


def test_the_host_writes_every_report_without_torch_and_the_same_as_in_process(tmp_path):
    """The grading host (its command line, a contract, the run's record, every report) never imports torch."""
    from tpconform.grading import report

    run, recs = _fixture_records()
    data = tmp_path / "records.json"
    data.write_text(json.dumps([run, recs]))
    r = subprocess.run([sys.executable, "-c", WRITE, str(data), str(tmp_path / "host")], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0 and "no torch;" in r.stdout, r.stdout + r.stderr[-3000:]
    os.makedirs(tmp_path / "here")
    # the same records written here, where torch is loaded (the catalog built in this process): the same bytes
    report.write_all(str(tmp_path / "here"), {**run, "weights": load_weights().as_dict()}, json.loads(data.read_text())[1],
                     load_weights(), gradescope_files=True)
    host, here = _read_all(str(tmp_path / "host")), _read_all(str(tmp_path / "here"))
    assert set(host) >= {"report.json", "summary.md", "index.html", "students/bug.html", "gradescope/bug/results.json"}
    assert host == here


def test_the_catalog_a_child_builds_is_the_one_built_here():
    assert catalog._from_child() == json.loads(json.dumps(catalog.build()))


# -- the sandbox side imports no host module ----------------------------------------------------
# (the preflight the verdict runs first lives with the impl registry, impls/preflight.py: read as one of these)
SANDBOX = ("verdict", "one", "failures", os.path.join(ROOT, "impls", "preflight"))
HOST = ("cli", "isolation", "bwrap", "report", "scoring", "gradescope", "student_view", "submissions", "suspicious",
        "logs", "markdown_safe")


def _imports(module: str) -> set[str]:
    with open(os.path.join(GRADING, f"{module}.py")) as fh:  # an absolute path: os.path.join keeps it
        tree = ast.parse(fh.read())
    found = set()
    for node in ast.walk(tree):  # function-local imports too: what the process runs, not only its header
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize("module", SANDBOX)
def test_the_sandbox_side_imports_no_host_module(module):
    host = {f"tpconform.grading.{m}" for m in HOST}
    assert not _imports(module) & host, f"{module}.py (sandbox side) imports {sorted(_imports(module) & host)}"


# -- an unknown field is an error, never a silent drop ------------------------------------------
GOOD_CELL = {"property": PROP, "variant": "row-full-input", "verdict": "pass", "reason": None, "examples": 1}


@pytest.mark.parametrize("kind, value, says", [
    ("cell", {**GOOD_CELL, "colour": "red"}, "cell: unknown field 'colour'"),
    ("cell", {**GOOD_CELL, "errors": [{"rank": 0, "secret": 1}]}, "cell.errors[0]: unknown field 'secret'"),
    ("cell", {**GOOD_CELL, "minimal_example": {"token": "t", "description": "d", "extra": 1}},
     "cell.minimal_example: unknown field 'extra'"),
    ("describe", {"name": "x", "capabilities": {**CAPS, "superpowers": True}},
     "describe.capabilities: unknown field 'superpowers'"),
    ("failure", {"id": "F1.1", "kind": "property", "scope": "contract", "variant": "row-full-input",
                 "property": PROP, "properties": [PROP], "points": 1000}, "failure: unknown field 'points'"),
    ("cell", {**GOOD_CELL, "examples": "many"}, "cell.examples: expected an integer"),
    ("cell", {**GOOD_CELL, "variant": "mlp/any"}, "cell: variant 'mlp/any' is not one of property"),
])
def test_a_record_with_a_field_no_definition_has_is_refused_with_one_line(kind, value, says):
    with pytest.raises(records.Invalid) as exc:
        records.record({kind: value})
    assert says in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_a_refused_record_is_counted_and_said_in_the_log_and_its_cell_scores_as_not_come_back():
    read_fd, write_fd = os.pipe()
    lines = [{"describe": {"name": "x", "capabilities": CAPS}}, {"cell": GOOD_CELL},
             {"cell": {**GOOD_CELL, "variant": "row-sliced-input", "verdict": "pass", "points": 99}}, {"done": True}]
    with os.fdopen(write_fd, "w") as fh:
        fh.write("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    got, stats = [], {}
    records.read_stream(read_fd, got, stats)
    assert [k for k, _ in got] == ["describe", "cell", "done"] and stats["dropped"] == 2
    assert records.refused_line(stats) == ("grader: 2 record(s) from the sandbox refused; the first: cell: unknown "
                                           "field 'points' (the record definitions: tpconform.grading.records)")
    cells = [v for k, v in got if k == "cell"]
    scored = score_submission({"status": "done", "describe": got[0][1], "cells": cells}, load_weights())
    variants = scored["properties"][PROP]["variants"]
    assert variants["row-full-input"]["verdict"] == "pass" and variants["row-sliced-input"]["verdict"] == "crash"


def test_a_stored_result_with_an_unknown_field_is_graded_again_not_a_crash():
    run, recs = _fixture_records()
    result = recs[0]["result"]
    assert records.stored_result(result)["cells"] == [records.cell(c) for c in result["cells"]]
    forged = {**result, "bonus_points": 50}
    with pytest.raises(records.Invalid, match="result: unknown field 'bonus_points'"):
        records.stored_result(forged)
    scored = score_submission(forged, load_weights())
    assert scored["total"] == 0 and "unknown field 'bonus_points'" in scored["why"]


def test_the_verdict_projects_what_an_impl_says_of_itself_onto_the_record():
    """The impl's own description says more than the report keeps (its convention, set-up time, empty parts):
    the verdict leaves that out; the host refuses it."""
    said = {"name": "x", "version": None, "convention": "simple-module", "setup_timeout_s": 120.0,
            "capabilities": {**CAPS, "accepts_group": True, "padded_shards": False, "backward": True,
                             "equal_blocks": False, "primitives": [], "families": {}}}
    kept = records.describe(said, keep_known=True)
    assert kept == {"name": "x", "version": "", "capabilities": {**CAPS, "accepts_group": True, "padded_shards": False,
                                                                "backward": True, "equal_blocks": False}}
    assert records.describe(kept) == kept
    with pytest.raises(records.Invalid, match="unknown fields 'convention', 'setup_timeout_s'"):
        records.describe(said)
