"""Seconds per submission when grading a class at a task's scope (a contract: world sizes 1, 2, 4,
float32 by default), with and without the bubblewrap sandbox.

Grades ``--copies`` copies of a correct submission (and of a seeded bug, whose failures are grouped
and shrunk, which costs more) with ``tpconform grade --contract``, once sandboxed and once with
``--unsandboxed``, alternating the two modes ``--rounds`` times so machine load hits both alike, and
prints each submission's own time (``seconds`` in the report: from starting its verdict process to
its last record), the wall clock per submission (the whole run / submissions: with ``--jobs 2`` the
class's pace) and the CPU seconds per submission (unsandboxed: the grade's whole process tree, reaped
by this script, so other work on the machine does not count; sandboxed: the machine's busy time during
the run, to read on an otherwise idle machine).

    python benchmarks/grading_speed.py [--contract conformance/grading/contracts/course.toml]
        [--copies 4] [--rounds 2] [--examples 15] [--jobs 1] [--with-bug] [--with-unimportable]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORRECT = os.path.join(ROOT, "tests", "selftest", "fixtures", "grading", "reference_copy.py")
BUGGY = os.path.join(ROOT, "tests", "selftest", "fixtures", "grading", "bug_bias_every_rank.py")
# a submission that does not import, in a way no reading of its source can tell (it raises while it runs):
# what its grade costs is the verdict's start-up, the forkserver's and one worker's load
UNIMPORTABLE = "import torch\n\nraise ImportError(\"this submission fails at import\")\n"
TASK = os.path.join(ROOT, "conformance", "grading", "contracts", "course.toml")


def _cpu() -> float:
    """The machine's busy CPU seconds so far (every process, from ``/proc/stat``): the grader kills a
    verdict's process tree once its records end, so the run's processes are not all reaped children
    and ``RUSAGE_CHILDREN`` would miss them. Measure on an otherwise idle machine."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _adopt_orphans() -> None:
    """Become a child subreaper: the processes a grade's tree leaves (a forkserver, its workers, killed
    when their verdict's records end) are reaped here, so their CPU time reaches ``RUSAGE_CHILDREN``
    (unsandboxed only: in the sandbox they live and die in its PID namespace)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _tree_cpu(deadline_s: float = 30.0) -> float:
    """The CPU seconds of every descendant reaped so far, after reaping the ones that are gone (bounded)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def grade(folder: str, out: str, contract: str, examples: int, jobs: int, sandboxed: bool) -> tuple[float, float, list]:
    cmd = [sys.executable, "-m", "conformance", "grade", folder, "--out", out, f"--contract={contract}",
           f"--examples={examples}", f"--jobs={jobs}", "--no-progress"] + ([] if sandboxed else ["--unsandboxed"])
    started, cpu, tree = time.monotonic(), _cpu(), _tree_cpu()
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                       check=False)
    wall, cpu = time.monotonic() - started, _cpu() - cpu
    if not sandboxed:
        cpu = _tree_cpu() - tree  # the grade's own processes: other work on the machine left out
    if r.returncode != 0:
        raise SystemExit(f"grade failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(out, "report.json")) as fh:
        subs = json.load(fh)["submissions"]
    return wall, cpu, subs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contract", default=TASK)
    p.add_argument("--copies", type=int, default=4, help="copies of each submission per round (default: 4)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--examples", type=int, default=15, help="random examples per variant, after the anchors")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default: 1, each one's own time)")
    p.add_argument("--with-bug", action="store_true", help="also grade copies of a seeded bug")
    p.add_argument("--with-unimportable", action="store_true",
                   help="also grade copies of a submission that raises while it imports (no static check sees it)")
    a = p.parse_args()
    _adopt_orphans()
    from tpconform.grading import bwrap

    modes = [False] if bwrap.unavailable() else [True, False]
    kinds = ("correct", "buggy", "unimportable")
    times: dict = {m: {**{k: [] for k in kinds}, "wall": [], "cpu": []} for m in modes}
    for _ in range(a.rounds):
        for sandboxed in modes:
            with tempfile.TemporaryDirectory(prefix="grading-speed-") as tmp:
                folder = os.path.join(tmp, "subs")
                os.makedirs(folder)
                for i in range(a.copies):
                    shutil.copy(CORRECT, os.path.join(folder, f"correct_{i}.py"))
                    if a.with_bug:
                        shutil.copy(BUGGY, os.path.join(folder, f"buggy_{i}.py"))
                    if a.with_unimportable:
                        with open(os.path.join(folder, f"unimportable_{i}.py"), "w") as fh:
                            fh.write(UNIMPORTABLE)
                wall, cpu, subs = grade(folder, os.path.join(tmp, "out"), a.contract, a.examples, a.jobs, sandboxed)
                for s in subs:
                    kind = s["name"].rsplit("_", 1)[0]
                    if kind == "correct" and s["total"] != s["max"]:
                        raise SystemExit(f"a correct submission lost points: {s['name']} {s['total']}/{s['max']}")
                    times[sandboxed][kind].append(s["seconds"])
                times[sandboxed]["wall"].append(wall / len(subs))
                times[sandboxed]["cpu"].append(cpu / len(subs))
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"contract {os.path.relpath(a.contract, ROOT)}, {a.examples} random examples per variant after the "
          f"anchors, --jobs {a.jobs}, {os.cpu_count()} CPUs, load average now {' '.join(load)}")
    for sandboxed in modes:
        t = times[sandboxed]
        name = "sandboxed (bubblewrap)" if sandboxed else "unsandboxed"
        for kind in kinds:
            if t[kind]:
                print(f"  {name:24s} {kind:8s} seconds per submission: median {statistics.median(t[kind]):.2f}, "
                      f"min {min(t[kind]):.2f}, max {max(t[kind]):.2f} (n={len(t[kind])})")
        print(f"  {name:24s} wall clock per submission (whole run / submissions): "
              + ", ".join(f"{w:.2f}" for w in t["wall"]))
        # CPU time does not grow with other jobs' load the way wall clock does: on an otherwise idle
        # machine a submission takes at least cpu / cores and at most about cpu seconds. Unsandboxed, the
        # grade's own process tree (reaped here); sandboxed, the whole machine's busy time (measure idle)
        what = "the grade's process tree" if not sandboxed else "every process of the machine"
        print(f"  {name:24s} CPU seconds per submission (user + system, {what}): "
              + ", ".join(f"{c:.2f}" for c in t["cpu"]))


if __name__ == "__main__":
    main()
