"""Wall time of the property suite with and without pytest-xdist: ``-n 0`` against ``-n N``.

    python benchmarks/xdist.py [--workers 2] [--repeats 2] [--world-sizes 1-8] [--profile ci]
                               [--out benchmarks/results/xdist.json]

Each xdist worker is a separate pytest process: it pays its own torch import and starts its own
process groups (one per world size, ``world_size`` ranks each), while ``-n 0`` starts them once.
Runs alternate (0, N, 0, N, ...) so a busy machine hurts both the same; the table reports the best
and the median of each. The result decides the default documented in the README ("Speed: -n 0 or
-n auto"); rerun it on your CI machine before changing ``-n`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_run(workers: int, world_sizes: str, profile: str) -> float:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:benchmark", "tests/properties",
           "--impl=reference", f"--world-sizes={world_sizes}", f"--tp-profile={profile}", "-n", str(workers)]
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"xdist benchmark: -n {workers} failed (exit {r.returncode}):\n{r.stdout[-2000:]}")
    return took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--world-sizes", default="1-8")
    ap.add_argument("--profile", default="ci")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "xdist.json"))
    args = ap.parse_args(argv)
    times: dict[int, list[float]] = {0: [], args.workers: []}
    for _ in range(args.repeats):
        for n in times:
            times[n].append(one_run(n, args.world_sizes, args.profile))
            print(f"-n {n}: {times[n][-1]:.1f} s", flush=True)
    print(f"\n{'':8}{'best':>8}{'median':>9}   (cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f})")
    for n, ts in times.items():
        print(f"-n {n:<5}{min(ts):>8.1f}{statistics.median(ts):>9.1f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"cores": os.cpu_count(), "machine": platform.platform(), "world_sizes": args.world_sizes,
                   "profile": args.profile, "seconds": {f"-n {n}": ts for n, ts in times.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
