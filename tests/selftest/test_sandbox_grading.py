"""Grading untrusted code in the bubblewrap sandbox: one ``tpconform grade`` run over a folder of hostile
submissions (one per attack class, ``fixtures/hostile_sandbox/``, plus FIFOs, device symlinks and
sparse files made here) and correct controls. Afterwards: no attack scores above the do-nothing layer,
every control has full marks, the checkout, the Python environment and the other submissions are
byte-identical, no process of theirs is left, the grader finished, and the reports are small."""

import glob
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import time

import pytest
from tpconform.grading import bwrap
from tpconform.grading.scoring import load_weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures", "hostile_sandbox")
# one random example per variant beside the anchor cases (CI time): the attacks need no more to show
OPTIONS = ["--world-sizes=2", "--examples=1", "--timeout=15", "--time-limit=300", "--seed=0", "--jobs=2",
           "--no-progress"]
CONTROLS = ("control_reference", "control_adapter_pkg")
BASELINE = "donothing"
BAD_FILES = {"fifo.py": "a FIFO", "zero.py": "a symlink", "sparse": "limit", "fifo_pkg": "a FIFO",
             "devlink_pkg": "a symlink", "sparse_pkg": "limit"}
# manifests that point at the suite's own reference instead of the submission's code
MANIFESTS = {"registry_name_pkg": "names no module of the submission", "suite_module_pkg": "grading suite's own code",
             "suite_path_pkg": "inside the submission's folder"}
MARKERS = (b"tpc-escapee", b"tpc-orphan")

pytestmark = pytest.mark.skipif(bwrap.unavailable() is not None,
                                reason=f"no sandbox here: {bwrap.unavailable()}")


def _digest_tree(root, skip=("__pycache__", ".venv", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                                   ".hypothesis")):
    h = {}
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in skip)
        for n in sorted(names):
            p = os.path.join(d, n)
            st = os.lstat(p)
            if os.path.isfile(p) and not os.path.islink(p) and st.st_size < 1 << 20:
                with open(p, "rb") as fh:
                    h[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
            else:
                h[os.path.relpath(p, root)] = (st.st_mode, st.st_size)
    return h


def _environment():
    """Every entry of the Python environment's import folders, and the bytes of what start-up runs."""
    dirs = {p for p in sys.path if p and os.path.isdir(p) and not p.startswith(ROOT + os.sep + "tests")}
    dirs.update(site.getsitepackages())
    seen = {}
    for d in sorted(dirs):
        if os.path.realpath(d) == os.path.realpath(ROOT):
            continue
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            if n.endswith(".pth") or n in ("sitecustomize.py", "usercustomize.py"):
                with open(p, "rb") as fh:
                    seen[p] = hashlib.sha256(fh.read()).hexdigest()
            else:
                seen[p] = os.lstat(p).st_mode
    return seen


def _lingering():
    left = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{pid}/comm", "rb") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        if comm in MARKERS or b"hostile-sandbox-subs" in cmd:
            left.append((pid, comm, cmd[:200]))
    return left


def _make_bad_files(folder):
    os.mkfifo(os.path.join(folder, "fifo.py"))
    os.symlink("/dev/zero", os.path.join(folder, "zero.py"))
    with open(os.path.join(folder, "sparse.py"), "wb") as fh:
        fh.truncate(20 << 30)  # 20 GB, sparse
    for name, make in (("fifo_pkg", lambda p: os.mkfifo(os.path.join(p, "data.bin"))),
                       ("devlink_pkg", lambda p: os.symlink("/dev/zero", os.path.join(p, "weights.bin"))),
                       ("sparse_pkg", lambda p: open(os.path.join(p, "blob.bin"), "wb").truncate(10 << 30))):
        pkg = os.path.join(folder, name)
        os.makedirs(pkg)
        shutil.copy(os.path.join(FIXTURES, "donothing.py"), os.path.join(pkg, "layer.py"))
        with open(os.path.join(pkg, "tpconform.toml"), "w") as fh:
            fh.write('impl = "layer.py"\n')
        make(pkg)


def _grade(subs, out):
    cmd = [sys.executable, "-m", "tpconform", "grade", subs, "--out", out, *OPTIONS]
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("sandboxed")
    subs, out = str(base / "hostile-sandbox-subs"), str(base / "hostile-sandbox-out")
    shutil.copytree(FIXTURES, subs, ignore=shutil.ignore_patterns("__pycache__"))
    _make_bad_files(subs)
    before = {"checkout": _digest_tree(ROOT), "environment": _environment(), "submissions": _digest_tree(subs)}
    started = time.monotonic()
    r = _grade(subs, out)
    seconds = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    time.sleep(3.0)  # an escaped process would rewrite the report once the grader is gone
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    after = {"checkout": _digest_tree(ROOT), "environment": _environment(), "submissions": _digest_tree(subs)}
    return {"report": report, "out": out, "subs": subs, "before": before, "after": after, "seconds": seconds,
            "run": r}


def _by_name(report):
    return {s["name"]: s for s in report["submissions"]}


def test_no_attack_scores_above_a_do_nothing_layer_and_every_control_gets_full_marks(graded):
    subs = _by_name(graded["report"])
    weights = load_weights()

    def on_the_layers(name: str) -> float:  # the linear layers' points (an attack package that subclasses the
        return sum(subs[name]["properties"][p]["score"] for p in weights.points)  # reference earns its families')

    floor = on_the_layers(BASELINE)
    assert floor < weights.total / 2
    for name in CONTROLS:
        assert subs[name]["total"] == subs[name]["max"], (name, subs[name]["why"])
    attacks = [n for n in subs if n not in CONTROLS and n != BASELINE]
    assert len(attacks) >= 10 + len(BAD_FILES) - 1
    over = {n: on_the_layers(n) for n in attacks if on_the_layers(n) > floor}
    assert not over, f"scored above the do-nothing layer ({floor}): {over}"


def test_files_that_are_not_regular_or_too_large_are_refused_without_reading_them(graded):
    subs = _by_name(graded["report"])
    for name, says in BAD_FILES.items():
        assert subs[name]["total"] == 0 and says in subs[name]["why"], (name, subs[name]["why"])


def test_a_manifest_may_name_only_the_submissions_own_code(graded):
    subs = _by_name(graded["report"])
    for name, says in MANIFESTS.items():
        assert subs[name]["total"] == 0 and says in subs[name]["why"], (name, subs[name]["why"])


def test_the_checkout_the_environment_and_the_other_submissions_are_unchanged(graded):
    for what in ("checkout", "environment", "submissions"):
        b, a = graded["before"][what], graded["after"][what]
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        assert not changed, (what, changed[:10])


def test_nothing_is_left_running_and_the_report_is_neither_rewritten_nor_large(graded):
    assert not _lingering()
    out = graded["out"]
    with open(os.path.join(out, "report.json")) as fh:
        assert json.load(fh)["schema"] == "tpconform-grading/1"
    assert os.path.getsize(os.path.join(out, "report.json")) < 4 << 20
    for path in glob.glob(os.path.join(out, "submissions", "*.json")):
        assert os.path.getsize(path) < 1 << 20, path
        with open(path) as fh:
            assert "fingerprint" in json.load(fh), path
    assert os.path.getsize(os.path.join(out, "index.html")) < 8 << 20


def test_the_report_says_sandboxed_and_lists_suspicious_code(graded):
    report = graded["report"]
    subs = _by_name(report)
    assert report["run"]["sandbox"].startswith("bubblewrap")
    assert all(s["sandbox"].startswith("bubblewrap") for s in subs.values() if s["status"] != "not-run")
    for name, why in (("proc_fd_writer", "/proc"), ("harness_patcher", "stack frames"),
                      ("escaper", "C library"), ("planter", "imports"), ("narrow_dtypes", "grading suite")):
        whys = " ".join(h["why"] for h in subs[name]["suspicious"])
        assert why in whys, (name, subs[name]["suspicious"][:5])
    assert not subs["control_reference"]["suspicious"]
    assert "float16" in (subs["narrow_dtypes"]["narrowed"] or "")
    with open(os.path.join(graded["out"], "summary.md")) as fh:
        assert "## Suspicious code" in fh.read()


def test_damaged_stored_results_are_graded_again_instead_of_crashing(graded, tmp_path):
    out = str(tmp_path / "hostile-sandbox-out-again")
    shutil.copytree(graded["out"], out)
    path = os.path.join(out, "submissions", "donothing.json")
    with open(path) as fh:
        rec = json.load(fh)
    rec["result"]["cells"] = [{"property": 5, "verdict": ["pass"]}, "x" * 1000]
    with open(path, "w") as fh:
        json.dump(rec, fh)
    with open(os.path.join(out, "submissions", "control_reference.json"), "w") as fh:
        fh.write('{"fingerprint": ')
    subs = str(tmp_path / "hostile-sandbox-subs")
    os.makedirs(subs)
    for name in ("donothing.py", "control_reference.py"):
        shutil.copy(os.path.join(FIXTURES, name), subs)
    r = _grade(subs, out)
    assert r.returncode == 0 and "graded 2 submission(s)" in r.stdout, r.stdout + r.stderr[-3000:]
    with open(os.path.join(out, "report.json")) as fh:
        again = _by_name(json.load(fh))
    before = _by_name(graded["report"])
    for name in ("donothing", "control_reference"):
        assert again[name]["total"] == before[name]["total"], name


def test_without_a_sandbox_grade_refuses_unless_told(tmp_path, monkeypatch):
    """What is checked is the refusal and the run's and the submission's label, so the submission is one
    that does not import (its verdict process starts without the sandbox, reads its imports and stops in
    milliseconds, no torch): a correct one graded unsandboxed end to end is in test_grading_zoo.py,
    test_declared_limits.py and test_readme.py."""
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "needs_a_missing_module.py").write_text("import torch\nimport not_a_module_anywhere\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "PATH": str(tmp_path / "nobin")}  # no bwrap on PATH
    cmd = [sys.executable, "-m", "tpconform", "grade", str(folder), "--out", str(tmp_path / "out"),
           "--world-sizes=2", "--examples=1", "--dtypes=float32", "--no-progress"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 4 and "refusing to run untrusted code" in r.stderr and "--unsandboxed" in r.stderr
    r = subprocess.run([*cmd, "--unsandboxed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(tmp_path / "out" / "report.json") as fh:
        report = json.load(fh)
    assert report["run"]["sandbox"] == "none (--unsandboxed)"
    sub = report["submissions"][0]
    assert sub["sandbox"] == "none (--unsandboxed)" and "not_a_module_anywhere" in (sub["why"] or ""), sub
