"""Seconds from an injected hang or crash to the clean failure, and processes left behind.

For each scenario in ``tests/selftest/fixtures/hostile`` (a rank that skips a collective, sleeps,
raises alone, segfaults, exits 0, ignores signals, forks escapees and hangs), run one example on a
pool with ``--timeout`` seconds, time it, check that it failed with a message naming the rank(s),
and count the workers' descendants still alive after the group is torn down.

    python benchmarks/failure_latency.py --timeout 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tpconform.engine.suite import Suite  # noqa: E402
from tpconform.families.linear.case import LayerCase  # noqa: E402
from tpconform.families.linear.run import run  # noqa: E402
from tpconform.transport import proctree  # noqa: E402
from tpconform.transport.harness import GroupPool  # noqa: E402

H = "tests.selftest.fixtures.hostile."
SCENARIOS = [
    "hangs:SkipsCollectiveOnRank1", "hangs:SleepsOnRank1", "resources:SpinsForever", "hangs:IgnoresSignalsAndHangs",
    "hangs:ForksEscapeesAndHangs", "hangs:RaisesOnRank1", "hangs:SegfaultsOnRank1", "exits:OsExit0OnRank1",
    "exits:SysExit0", "exits:TorchSkipExitCode", "exits:PytestSkip", "resources:AllocatesForever",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--world-size", type=int, default=2)
    args = ap.parse_args(argv)
    case = LayerCase(kind="column", world_size=args.world_size, in_features=4, out_features=4 * args.world_size,
                     batch_shape=(3,), dtype="float32", bias=True, seed=1)
    pool = GroupPool(timeout_s=args.timeout, memory_limit=1536 * 1024**2)
    clean = left = 0
    for spec in SCENARIOS:
        group = pool.get(args.world_size)
        workers = [r.process.pid for r in group.ranks]
        started = time.monotonic()
        outcome = run(Suite(H + spec, pool).runner, case)
        seconds = time.monotonic() - started
        stray = [p for p in proctree.descendants(workers) | set(workers) if proctree.alive(p)]
        pool.close()
        time.sleep(0.2)
        stray = [p for p in stray if proctree.alive(p)]
        ok = bool(outcome.crash) and "rank" in outcome.crash
        clean += ok
        left += len(stray)
        first = (outcome.crash or "PASSED (!)").splitlines()[0][:110]
        print(f"{spec:<34} {seconds:6.2f} s  left={len(stray)}  {first}", flush=True)
    print(f"{clean}/{len(SCENARIOS)} injected hangs/crashes became clean failures; processes left behind: {left}")
    return 0 if clean == len(SCENARIOS) and not left else 1


if __name__ == "__main__":
    sys.exit(main())
