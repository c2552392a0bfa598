"""What a worker really holds: the peak resident memory (anonymous + shared memory, with its child
processes: what ``--tp-memory-limit`` bounds, see ``tpconform.transport.memory_watch``) and the address space
of each worker while it runs an impl's examples, per world size, under the torch build of this
interpreter. Use it to see how far a correct impl stays below the default bound.

    python benchmarks/memory.py [--impl reference] [--world-sizes 1,2,8] [--examples 40]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from tpconform.engine.suite import Suite  # noqa: E402
from tpconform.strategies import VARIANTS  # noqa: E402
from tpconform.transport.harness import DEFAULT_MEMORY_LIMIT, GroupPool  # noqa: E402


def _address_space(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="reference")
    p.add_argument("--world-sizes", default="1,2,8")
    p.add_argument("--examples", type=int, default=40)
    a = p.parse_args()
    import torch

    print(f"torch {torch.__version__} (cuda {torch.version.cuda}), impl {a.impl}, bound "
          f"{DEFAULT_MEMORY_LIMIT / 2**30:.1f} GiB resident per worker")
    pool = GroupPool(memory_limit=DEFAULT_MEMORY_LIMIT)
    try:
        for ws in (int(w) for w in a.world_sizes.split(",")):
            suite = Suite(a.impl, pool, world_sizes=[ws])
            address = 0
            for variant in VARIANTS:
                if suite.unsupported(variant):
                    continue

                @settings(max_examples=a.examples, database=None, deadline=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=suite.cases(variant))
                def run(case):
                    suite.evidence(case)

                run()
                group = pool.get(ws)
                address = max(address, *(_address_space(r.process.pid) for r in group.ranks))
            watch = pool.get(ws).memory_watch
            peak = max(watch.peak.values())
            print(f"world size {ws}: peak resident {peak / 2**20:.0f} MiB per worker "
                  f"({100 * peak / DEFAULT_MEMORY_LIMIT:.0f}% of the bound); address space {address / 2**30:.2f} GiB")
    finally:
        pool.close()


if __name__ == "__main__":
    main()
