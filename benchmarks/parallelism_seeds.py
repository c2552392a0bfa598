"""No false failure of the parallelism check (``really_tensor_parallel``) over many seeds: grades
correct layers (the reference's copy and a simple-module file) in the bubblewrap sandbox once per seed
and prints, per seed, the check's verdict inside the contract and beyond it, and each total.

Slow (one whole grade per seed): kept out of the default CI run.

    python benchmarks/parallelism_seeds.py [--seeds 20] [--contract conformance/grading/contracts/course.toml]
        [--examples 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORRECT = [os.path.join(ROOT, "tests", "selftest", "fixtures", "grading", "reference_copy.py"),
           os.path.join(ROOT, "tests", "selftest", "fixtures", "simple_module_good.py")]
CHECK = "really_tensor_parallel"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--contract", default=os.path.join(ROOT, "conformance", "grading", "contracts", "course.toml"))
    p.add_argument("--examples", type=int, default=5)
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="tpc-parallelism-seeds-")
    subs = os.path.join(work, "subs")
    os.makedirs(subs)
    for path in CORRECT:
        shutil.copy(path, subs)
    false_failures = 0
    try:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            out = os.path.join(work, f"out{seed}")
            started = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "tpconform", "grade", subs, "--out", out, f"--seed={seed}",
                                f"--contract={a.contract}", f"--examples={a.examples}", "--jobs=2", "--no-progress"],
                               cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
            if not os.path.exists(os.path.join(out, "report.json")):
                print(f"seed {seed}: no report\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
                false_failures += 1
                continue
            with open(os.path.join(out, "report.json")) as fh:
                report = json.load(fh)
            row = []
            for s in report["submissions"]:
                check = s["properties"][CHECK]
                beyond = s.get("beyond", {}).get(CHECK, {}).get("verdict", "-")
                ok = check["verdict"] == "pass" and beyond in ("pass", "-") and s["total"] == s["max"]
                false_failures += not ok
                row.append(f"{s['name']}: {check['verdict']} (beyond: {beyond}), {s['total']:g}/{s['max']:g}"
                           + ("" if ok else f"  <-- {check['reason']}"))
            print(f"seed {seed:2d} ({time.monotonic() - started:.0f} s): " + "; ".join(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"false failures: {false_failures}")
    return 1 if false_failures else 0


if __name__ == "__main__":
    sys.exit(main())
