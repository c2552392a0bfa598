"""A grader reproduces a benchmark task's verdicts with one contract file and no change to any
submission: Terminal-Bench 2's torch-tensor-parallelism, whose files are in the simple-module
convention, graded with ``conformance/grading/contracts/benchmark.toml`` and with a verifier written
from the task's published text (``fixtures/benchmark_task/verifier.py``: shards, output, weight and
bias grads at world sizes 1, 2, 4, bias on and off, a zero bias, float32, [batch, in] inputs).

Every file the verifier fails scores below full marks; every file given full marks passes the
verifier; where they differ the verifier misses a real bug, and the report names it: the row bias
added on every rank (the task's zero bias hides it) and a missing all-reduce of the input grad (the
verifier checks no input grad)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from tpconform.grading import bwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
VERIFIER = os.path.join(FIXTURES, "benchmark_task", "verifier.py")
CONTRACT = os.path.join(ROOT, "conformance", "grading", "contracts", "benchmark.toml")
UNSANDBOXED = [] if bwrap.unavailable() is None else ["--unsandboxed"]

# file -> the verifier's verdict (True: passes), and for files it passes that tpconform fails, the
# likely cause tpconform must report (a bug the verifier does not check)
FILES = {
    "grading/reference_copy.py": (True, None),
    "grading_contract/beyond_only.py": (True, None),  # raises on 1-D inputs: beyond the task
    "grading_contract/bug_local_shard.py": (False, None),
    "benchmark_task/row_no_all_reduce.py": (False, None),
    "benchmark_task/column_grad_not_sliced.py": (False, None),
    "grading/bug_bias_every_rank.py": (True, "the bias is added on every rank, before the all-reduce"),
    "grading/bug_no_grad_allreduce.py": (True, "the backward all-reduce of the input grad is missing"),
}


def _name(rel: str) -> str:
    return os.path.splitext(os.path.basename(rel))[0]


def _verifier_verdicts(proc: subprocess.Popen) -> dict[str, bool]:
    """rel -> whether the verifier passes it: one verifier run over every file (its ranks forked from one
    forkserver that imported torch once), read from its ``FILE: PASS`` / ``FILE: FAIL`` lines."""
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()  # nothing left behind if it ran past its bound (a no-op once it has exited)
    said = dict(line.rsplit(": ", 1) for line in out.splitlines() if line.endswith((": PASS", ": FAIL")))
    assert set(said) == set(FILES), out + err[-2000:]
    return {rel: said[rel] == "PASS" for rel in FILES}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    base = tmp_path_factory.mktemp("benchmark-task")
    folder = base / "submissions"
    folder.mkdir()
    for rel in FILES:
        shutil.copy(os.path.join(FIXTURES, rel), folder / os.path.basename(rel))
    # the verifier runs beside the grade (two process trees, two cores)
    verifying = subprocess.Popen([sys.executable, VERIFIER, *FILES], cwd=FIXTURES, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(folder), "--out", str(base / "report"),
                            f"--contract={CONTRACT}", "--seed=0", "--examples=2", "--no-progress", *UNSANDBOXED],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                           timeout=900, check=False)
    finally:
        verifier = _verifier_verdicts(verifying)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    with open(base / "report" / "report.json") as fh:
        subs = {s["name"]: s for s in json.load(fh)["submissions"]}
    return verifier, subs


@pytest.mark.parametrize("rel", list(FILES))
def test_the_grade_agrees_with_the_verifier_or_names_what_it_misses(verdicts, rel):
    verifier, subs = verdicts
    passes, missed = FILES[rel]
    assert verifier[rel] is passes, f"the verifier's verdict on {rel} changed"
    sub = subs[_name(rel)]
    full = sub["total"] == sub["max"]
    inside = [f["cause"] for f in sub["failures"] if f["scope"] == "contract"]
    if not passes:
        assert not full, f"{rel}: the verifier fails it, the grade gives {sub['total']}/{sub['max']}"
    elif missed is None:
        assert full and not inside, f"{rel}: the verifier passes it, the grade gives {sub['total']}/{sub['max']}: {inside}"
    else:
        assert not full and any(missed in c for c in inside), (rel, inside)


def test_a_correct_task_file_meets_every_class_of_the_task(verdicts):
    """The two variants the task's files have, each at world sizes 1, 2, 4 x bias on and off x 2-D inputs."""
    sub = verdicts[1]["reference_copy"]
    assert set(sub["coverage"]) == {"column-gathered", "row-sliced-input"}
    assert all(met == total == 3 * 2 * 1 for met, total in sub["coverage"].values()), sub["coverage"]
