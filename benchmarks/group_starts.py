"""How long the groups of world sizes 2-8 take to start, with the impl loaded on every rank: one after
another (the order a run met them in before issue 29) or side by side (``Suite.start_groups``).

    python benchmarks/group_starts.py serial|parallel [--impl reference]
    python benchmarks/tree_time.py -- python benchmarks/group_starts.py parallel   # with the CPU seconds

The forkserver, the group of world size 1 and ``describe`` come first, timed apart. Wall time on a shared
machine: print the load average beside it, and compare the two ways in the same sitting.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tpconform.transport import forkserver  # noqa: E402

SIZES = list(range(2, 9))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("how", choices=("serial", "parallel"))
    ap.add_argument("--impl", default="reference")
    args = ap.parse_args()
    forkserver.start_early()
    from tpconform.engine.suite import Suite
    from tpconform.transport.harness import GroupPool

    pool = GroupPool()
    suite = Suite(args.impl, pool)
    try:
        t = time.perf_counter()
        suite.description
        print(f"forkserver + world size 1 + describe: {time.perf_counter() - t:.2f} s", flush=True)
        t0 = time.perf_counter()
        if args.how == "parallel":
            suite.runner.start_groups(SIZES)
        for ws in SIZES:
            t = time.perf_counter()
            suite.runner._group(ws)
            print(f"world size {ws}: {time.perf_counter() - t:.2f} s (up at {time.perf_counter() - t0:.2f} s)", flush=True)
        print(f"{args.how}: world sizes 2-8 in {time.perf_counter() - t0:.2f} s "
              f"(load average {open('/proc/loadavg').read().split()[0]})")
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
