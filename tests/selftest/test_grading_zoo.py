"""No seeded bug gets full marks in a grade: every bug of the zoo (``tpconform.impls.zoo``, each as a
tiny package whose adapter points at it) and every simple-module bug fixture is graded in one
``tpconform grade`` run at the grader's defaults (world sizes 1-8, every dtype) and in one at a
course's scope (``conformance/grading/contracts/course.toml``), and each scores below full marks.

Grading meets the covering cases ``pytest`` runs (``tests/properties/test_case_classes.py``: dims the
world size does not divide, fewer features than ranks, empty batches, every layout) before its random
examples, and judges them as pytest does, so a bug that only shows on uneven shards — remainder rows
dropped, a bias split unlike its weight, an empty-shard rank that skips its collective — costs points.
The other families have no fixed cases: a grade searches each of their variants with pytest's own
budget (15 examples at the ``ci`` profile), so the grades here run at the default budget too.

The whole zoo is slow (two grades of 56 submissions; on a loaded 2-core machine ~45 min each with one
random example a variant, more at the default 15): ``TPCONFORM_ZOO_GRADE=all pytest
tests/selftest/test_grading_zoo.py``. CI grades the bugs a default grade once gave full marks to while
pytest caught them (remainder rows dropped, a bias split unlike its weight), one random example a variant, at world sizes
1-3: what the covering cases alone must catch.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from tpconform.grading.scoring import load_weights
from tpconform.impls.zoo import BY_NAME, EXTENSIONS, ZOO

from tests.selftest.test_grading_families import _package

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
COURSE = os.path.join(ROOT, "conformance", "grading", "contracts", "course.toml")
# the simple-module convention's seeded bugs (files a student could submit)
SIMPLE_MODULE_BUGS = ("simple_module_bias_every_rank.py", "simple_module_missing_row.py", "grading/bug_bias_every_rank.py",
                      "grading/bug_no_grad_allreduce.py", "grading/bug_inplace_input.py")
# the zoo's bugs, one submission per module (two entries planting the same code grade the same)
MODULES = {bug.module: bug.name for bug in reversed(ZOO + EXTENSIONS)}
WHOLE_ZOO = os.environ.get("TPCONFORM_ZOO_GRADE") == "all"
# by default (CI): the regressions pytest caught and a default grade did not, graded by the covering cases
# (bug-empty-shard-skips-collective, the third, hangs the other ranks: each of its examples costs the
# example timeout, so it is graded with the whole zoo only)
CI_BUGS = ("bug-uneven-truncated", "bug-bias-split-differs")
if not WHOLE_ZOO:
    MODULES = {module: name for module, name in MODULES.items() if name in CI_BUGS}
    SIMPLE_MODULE_BUGS = ()
CI_SCOPE = [] if WHOLE_ZOO else ["--world-sizes=1-3", "--examples=1"]
SCOPES = {"defaults": [], "course": [f"--contract={COURSE}"]} if WHOLE_ZOO else {"defaults": []}
BUGS = {bug.replace("-", "_"): BY_NAME[bug] for bug in MODULES.values()}
SELF_REPORTED = load_weights().self_reported
# the families beyond the single layer (the course grades the linear layers only)
FAMILIES = {bug.variant.split("/")[0] for bug in EXTENSIONS}


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
                        "--jobs=2", "--no-progress", *SCOPES[request.param], *CI_SCOPE],
                       cwd=ROOT, capture_output=True, text=True, timeout=4 * 3600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    return request.param, names, {s["name"]: s for s in report["submissions"]}


def test_no_seeded_bug_gets_full_marks(graded):
    """Each seeded bug scores below full marks, except where the grade cannot take points by design:
    a bug that only a self-reported property shows (worth 0: its facts are measured in the
    candidate's own process, which can forge them) must be reported there; at a course's scope, a
    bug outside the assignment (a family it does not grade; uneven dims, other dtypes, 1-D inputs or a
    variant it does not require) must be reported beyond the contract."""
    scope, names, subs = graded
    not_graded = {name for name, bug in BUGS.items() if scope == "course" and bug.variant.split("/")[0] in FAMILIES}
    full = {}
    for name in names:
        sub = subs[name]
        assert sub["status"] == "done", (name, sub["status"], sub.get("why"))
        if sub["total"] < sub["max"] or name in not_graded:
            continue
        failures = sub.get("failures") or []
        if any(set(f["properties"]) <= set(SELF_REPORTED) for f in failures):
            continue  # shown, worth 0 by design
        if scope == "course" and any(f.get("scope") == "beyond" for f in failures):
            continue  # outside the assignment: reported for no points
        full[name] = [f["summary"][:100] for f in failures]
    assert not full, f"{scope}: full marks for seeded bugs {full}"


def test_without_a_contract_every_variant_first_meets_pytests_covering_cases():
    """The cases every search of a default grade meets before its random draws: the anchors and all
    the covering cases pytest runs for the same world sizes and dtypes (uneven dims included)."""
    from tpconform.families.linear.case_classes import covering_cases
    from tpconform.grading.one import Grader
    from tpconform.strategies import DTYPES, VARIANTS

    sizes = tuple(range(1, 9))
    grader = Grader("reference", seed_value=0, examples=1, world_sizes=sizes, dtypes=DTYPES, timeout_s=20,
                    emit=lambda record: None)
    try:
        (scope,) = grader.scopes()
        for variant in VARIANTS:
            fixed = [case.token() for case in scope.anchors(variant)]
            covering = [case.token() for case in covering_cases(variant, sizes, DTYPES)]
            assert set(covering) <= set(fixed) and len(fixed) == len(set(fixed)), variant
            assert any(case.uneven for case in covering_cases(variant, sizes, DTYPES))
    finally:
        grader.suite.pool.close()
