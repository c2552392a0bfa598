"""One resource budget per submission (``fixtures/budget/``), graded in the bubblewrap sandbox beside a
correct control:

- ``orphan_hog`` detaches a process from its worker (subreaper flag cleared, double fork, ``setsid``),
  re-parented to the sandbox's PID 1 outside every worker's tree, and grows it to 2.5 GiB: the grader's
  watch over the whole sandbox kills it at ``--sandbox-memory-mb`` and scores it 0, saying why;
- ``decode_bomb`` replies with one 1 MiB tensor referred to 1,024 times (~1 MiB on the wire, ~1 GiB
  rebuilt): the verdict refuses the message before building it;
- ``rootfs_filler`` writes into ``/opt``, ``/etc``, ``/root`` and ``/`` (bwrap's tmpfs, host memory):
  the root file system is read-only, the write fails, and the report says so;
- the control keeps full marks, well under the bound (its peak is measured and kept in its result)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from tpconform.grading import bwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures", "budget")
BUDGET_MB = 2048  # the control peaks at ~1,020 MiB here (verdict, forkserver, 1 + 2 workers)
OPTIONS = ["--world-sizes=1-2", "--examples=1", "--memory-mb=700", f"--sandbox-memory-mb={BUDGET_MB}", "--timeout=15",
           "--time-limit=300", "--seed=0", "--jobs=2", "--no-progress"]  # a limit load cannot reach

pytestmark = pytest.mark.skipif(bwrap.unavailable() is not None, reason=f"no sandbox here: {bwrap.unavailable()}")


def _orphans() -> list[int]:
    left = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm", "rb") as fh:
                if fh.read().strip() == b"tpc-budget-hog":
                    left.append(int(pid))
        except OSError:
            continue
    return left


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("budget")
    subs, out = str(base / "subs"), str(base / "out")
    shutil.copytree(FIXTURES, subs, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "tpconform", "grade", subs, "--out", out, *OPTIONS]
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                       timeout=900, check=False)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    results = {}
    for s in report["submissions"]:
        with open(os.path.join(out, "submissions", f"{s['key']}.json")) as fh:
            results[s["name"]] = json.load(fh)["result"]
    return {"subs": {s["name"]: s for s in report["submissions"]}, "results": results, "report": report}


def test_the_control_keeps_full_marks_well_under_the_bound(graded):
    control = graded["subs"]["control"]
    assert control["total"] == control["max"], control["why"]
    peak = graded["results"]["control"]["peak_memory_mb"]
    assert 0 < peak < BUDGET_MB / 1.5, peak
    assert graded["report"]["run"]["sandbox_memory_mb"] == BUDGET_MB


def test_an_orphan_memory_hog_is_killed_with_its_whole_sandbox(graded):
    hog = graded["subs"]["orphan_hog"]
    assert hog["total"] == 0, hog["why"]
    assert hog["why"].startswith("killed: its sandbox held") and "--sandbox-memory-mb" in hog["why"], hog["why"]
    assert "\n" not in hog["why"]
    assert not _orphans()


def test_a_reply_that_would_decode_to_a_gigabyte_is_refused(graded):
    bomb = graded["subs"]["decode_bomb"]
    assert bomb["total"] < bomb["max"]
    assert "would decode to more than 256 MiB" in bomb["why"], bomb["why"]
    assert graded["results"]["decode_bomb"]["peak_memory_mb"] < BUDGET_MB


def test_the_root_file_system_cannot_be_filled(graded):
    filler = graded["subs"]["rootfs_filler"]
    assert filler["total"] == 0
    assert "Read-only file system" in filler["why"], filler["why"]
