"""No seeded bug gets full marks in a grade: every bug of the zoo (``tpconform.impls.zoo``, each as a
tiny package whose adapter points at it) and every simple-module bug fixture is graded in one
``tpconform grade`` run at the grader's defaults (world sizes 1-8, every dtype) and in one at a
course's scope (``conformance/grading/contracts/course.toml``), and each scores below full marks.

Grading meets the covering cases ``pytest`` runs (``tests/properties/test_case_classes.py``: dims the
world size does not divide, fewer features than ranks, empty batches, every layout) before its random
examples, and judges them as pytest does, so a bug that only shows on uneven shards — remainder rows
dropped, a bias split unlike its weight, an empty-shard rank that skips its collective — costs points.
The random budget is cut to one example a variant here: what these grades catch, the fixed cases
catch, so a larger budget (the default 15) can only catch more.

Slow (two grades of ~60 submissions): ``pytest tests/selftest/test_grading_zoo.py``.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from tpconform.impls.zoo import EXTENSIONS, ZOO

from tests.selftest.test_grading_families import _package

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
COURSE = os.path.join(ROOT, "conformance", "grading", "contracts", "course.toml")
# the simple-module convention's seeded bugs (files a student could submit)
SIMPLE_MODULE_BUGS = ("simple_module_bias_every_rank.py", "simple_module_missing_row.py", "grading/bug_bias_every_rank.py",
                      "grading/bug_no_grad_allreduce.py", "grading/bug_inplace_input.py")
# the zoo's bugs, one submission per module (two entries planting the same code grade the same)
MODULES = {bug.module: bug.name for bug in reversed(ZOO + EXTENSIONS)}
SCOPES = {"defaults": [], "course": [f"--contract={COURSE}"]}


def submissions(folder) -> list[str]:
    """Write every seeded bug into ``folder`` as a submission; their names."""
    names = []
    for module, bug in MODULES.items():
        name = bug.replace("-", "_")
        _package(folder, name, module)
        names.append(name)
    for rel in SIMPLE_MODULE_BUGS:
        name = "simple_" + os.path.basename(rel)
        shutil.copy(os.path.join(FIXTURES, rel), folder / name)
        names.append(name)
    return names


@pytest.fixture(scope="module", params=list(SCOPES))
def graded(request, tmp_path_factory):
    subs = tmp_path_factory.mktemp(f"zoo-{request.param}")
    names = submissions(subs)
    out = subs / "out"
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(subs), "--out", str(out), "--unsandboxed",
                        "--jobs=2", "--examples=1", "--no-progress", *SCOPES[request.param]],
                       cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    return request.param, names, {s["name"]: s for s in report["submissions"]}


def test_no_seeded_bug_gets_full_marks(graded):
    scope, names, subs = graded
    full = {n: subs[n]["status"] for n in names if subs[n]["total"] >= subs[n]["max"]}
    assert not full, f"{scope}: full marks for seeded bugs {full}"
    for name in names:
        assert subs[name]["status"] == "done", (name, subs[name]["status"], subs[name].get("why"))
