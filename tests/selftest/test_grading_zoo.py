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
# example timeout, so it is graded with the whole zoo only) ...
CI_BUGS = ("bug-uneven-truncated", "bug-bias-split-differs")
# ... and one seeded bug per usage protocol, each caught by that protocol alone (gradient accumulation; two
# forwards before their backwards, in either order; a frozen input; no_grad / inference_mode calls between
# training calls; the layer converted after construction; mixed precision under autocast; the layer as
# built; a state_dict reloaded), graded on a small contract (the linear layers, world size 2, float32 and
# bfloat16, the two default variants, nothing beyond it)
PROTOCOL_BUGS = ("bug-weight-grad-assigned", "bug-saved-inputs-on-a-stack", "bug-frozen-input-no-weight-grad",
                 "bug-no-grad-call-flips-backward", "bug-reduce-dtype-fixed-at-construction",
                 "bug-cast-weight-cached-once", "bug-bias-initialised-like-nn-linear",
                 "bug-first-call-restores-built-weight")
PROTOCOLS = os.path.join(FIXTURES, "grading", "protocols.toml")
# the families beyond the single layer (the course grades the linear layers only: their bugs are not graded there)
FAMILIES = {bug.variant.split("/")[0] for bug in EXTENSIONS}
if WHOLE_ZOO:
    SCOPES = {"defaults": (list(MODULES.values()), []),
              "course": ([b for b in MODULES.values() if BY_NAME[b].variant.split("/")[0] not in FAMILIES],
                         [f"--contract={COURSE}"])}
else:
    SCOPES = {"defaults": (list(CI_BUGS), ["--world-sizes=1-3", "--examples=1"]),
              "protocols": (list(PROTOCOL_BUGS), [f"--contract={PROTOCOLS}", "--examples=1"])}
    SIMPLE_MODULE_BUGS = ()
BUGS = {bug.replace("-", "_"): BY_NAME[bug] for bug in MODULES.values()}
SELF_REPORTED = load_weights().self_reported


def submissions(folder, bugs) -> list[str]:
    """Write the seeded ``bugs`` (registry names) into ``folder`` as submissions, one per module (two
    entries planting the same code grade the same), and the simple-module bug files; their names."""
    names = []
    for module, bug in MODULES.items():
        if bug not in bugs:
            continue
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
    bugs, options = SCOPES[request.param]
    names = submissions(subs, bugs)
    out = subs / "out"
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(subs), "--out", str(out), "--unsandboxed",
                        "--jobs=2", "--no-progress", *options],
                       cwd=ROOT, capture_output=True, text=True, timeout=4 * 3600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    return request.param, names, {s["name"]: s for s in report["submissions"]}


def test_no_seeded_bug_gets_full_marks(graded):
    """Each seeded bug scores below full marks, except where the grade cannot take points by design:
    a bug that only a self-reported property shows (worth 0: its facts are measured in the
    candidate's own process, which can forge them) must be reported there; a bug of a family the grade
    does not score (``[families] scored`` without a contract: the single layer's alone; a contract's
    ``families``) must be reported in that family where the grade runs it (for no points), and is not
    graded where it does not; at a contract's scope, a bug outside the assignment (uneven dims, other
    dtypes, 1-D inputs or a variant it does not require) must be reported beyond the contract."""
    scope, names, subs = graded
    full = {}
    for name in names:
        sub = subs[name]
        assert sub["status"] == "done", (name, sub["status"], sub.get("why"))
        if sub["total"] < sub["max"]:
            continue
        failures = sub.get("failures") or []
        family = BUGS[name].variant.split("/")[0] if name in BUGS else None
        if family in FAMILIES and any(f["variant"].split("/")[0] == family for f in failures):
            continue  # a family the grade does not score: reported in its family, for no points
        if any(set(f["properties"]) <= set(SELF_REPORTED) for f in failures):
            continue  # shown, worth 0 by design
        if scope != "defaults" and any(f.get("scope") == "beyond" for f in failures):
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
