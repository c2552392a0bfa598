"""The complete default run, as a user runs it, against the correct implementations the project ships (a
simple-module file and an adapter package run it from the wheel in their own folder, ``test_gate.py``; the
reference is ``tests/properties`` in this run): ``pytest --impl=X`` with no other option (every property
file, world sizes 1-8, every dtype, the default memory bound and timeout) must be green, and every skip must say why; ``tpconform grade``
at its defaults must give each correct submission full marks.

A test of a subset is not a test of the default run: correct simple-module files once failed the
TP sub-group test at the defaults because the self-tests ran them at world sizes 1-3 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from tpconform.grading import bwrap

from tests.selftest.test_gate import assert_a_green_default_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
ADAPTER_PKG = os.path.join(FIXTURES, "grading", "adapter_pkg")
# a machine without bubblewrap (a contributor's, fresh) grades these trusted files unsandboxed
UNSANDBOXED = [] if bwrap.unavailable() is None else ["--unsandboxed"]

# (id, --impl): the correct impls whose complete default run is not run elsewhere. The
# reference's is tests/properties in this very run (`pytest tests`: no --impl is --impl=reference, at the
# defaults); a simple-module file's and an adapter package's are run where users run them, from the wheel in
# their own folder (tests/selftest/test_gate.py: a student's file, the README's adapter with a junit report);
# here the per-family capabilities with padded shards.
CORRECT = [
    ("reference-even-padded", "reference-even-padded"),  # per-family capabilities, padded shards
]
TIMES: dict[str, float] = {}


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HYPOTHESIS", "TPCONFORM"))}


@pytest.mark.parametrize("name, impl", CORRECT, ids=[c[0] for c in CORRECT])
def test_the_complete_default_run_is_green(name, impl):
    started = time.monotonic()
    # -rs: pytest's own skip summary, so every skip's reason can be read; nothing else is set
    # the per-family capabilities need no more ranks than 4 (CI time; TPCONFORM_SELFTEST_FULL=1: the defaults)
    scope = [] if os.environ.get("TPCONFORM_SELFTEST_FULL") else ["--world-sizes=1-4"]
    r = subprocess.run([sys.executable, "-m", "pytest", f"--impl={impl}", "-rs", *scope], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=1200)
    TIMES[name] = time.monotonic() - started
    summary = assert_a_green_default_run(r, name)
    print(f"{name}: {summary} ({TIMES[name]:.0f} s)")


def test_grading_gives_every_correct_submission_full_marks(tmp_path):
    """``tpconform grade`` at its defaults (world sizes 1-8, every dtype, the ci profile's examples)."""
    folder, out = tmp_path / "class", tmp_path / "report"
    os.makedirs(folder)
    shutil.copy(os.path.join(FIXTURES, "simple_module_good.py"), folder / "simple_module_good.py")
    shutil.copytree(ADAPTER_PKG, folder / "adapter_pkg", ignore=shutil.ignore_patterns("__pycache__"))
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(folder), "--out", str(out), "--no-progress",
                        *UNSANDBOXED],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(out / "report.json") as fh:
        report = json.load(fh)
    scores = {s["name"]: s for s in report["submissions"]}
    assert set(scores) == {"simple_module_good", "adapter_pkg"}, scores
    for name, score in scores.items():
        failing = {p: v["verdict"] for p, v in score["properties"].items() if v["verdict"] != "pass"}
        assert score["total"] == score["max"], f"{name}: {score['total']}/{score['max']}; {failing}"
    print(f"graded 2 correct submissions at the defaults in {time.monotonic() - started:.0f} s")
