"""What the grading's parallelism check (``really_tensor_parallel``) measures: per example, the bytes
the sandbox's own loopback carried (the kernel's count, read by the verdict), against the allowance
``loopback_allowance`` computes from the case, for a correct layer and for layers that move weights.

Each impl runs in a bubblewrap sandbox exactly as ``tpconform grade`` runs a verdict (its own network
namespace, the suite snapshot read-only); every example runs every stage, as grading runs it.

    python benchmarks/parallelism_bytes.py [--impl reference --impl tests/selftest/fixtures/...py]
        [--world-sizes 2,3,4] [--small 3]

``--small N``: also N small random-looking cases per variant and world size (the overhead-dominated end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures", "parallelism")

INNER = r"""
import json, sys
from dataclasses import replace
from tpconform.engine.suite import Suite
from tpconform.families.linear import verdict
from tpconform.strategies import VARIANTS
from tpconform.families.linear.strategy import parallelism_cases
from tpconform.families.linear.case import LayerCase
from tpconform.transport import loopback, rank_walls
from tpconform.transport.harness import GroupPool

impl, sizes, small = sys.argv[1], [int(w) for w in sys.argv[2].split(",")], int(sys.argv[3])
pool = GroupPool(timeout_s=60)
suite = Suite(impl, pool, world_sizes=sizes)
suite.runner.traffic = loopback.private_counter()
assert suite.runner.traffic is not None, "not in a private network namespace"
pool.walls = rank_walls.unavailable() is None  # as the verdict: the ranks walled apart where the kernel can
for v in VARIANTS:
    if suite.unsupported(v):
        continue
    cases = parallelism_cases(v, sizes, ["float32"])
    for ws in sizes:
        for i in range(small):
            cases.append(LayerCase(kind=v.kind, world_size=ws, in_features=ws * (1 + i), out_features=ws * (2 + i),
                                   batch_shape=(2 + i,), dtype=("float32", "bfloat16", "float64")[i % 3], bias=True,
                                   gather_output=v.gather_output, input_is_parallel=v.input_is_parallel, seed=7 + i))
    for case in cases:
        ev = suite.evidence(case)
        found = verdict.evaluate(ev, "really_tensor_parallel")
        itemsize = max(4, case.torch_dtype.itemsize)
        print(json.dumps({"variant": str(v), "ws": case.world_size, "in": case.in_features, "out": case.out_features,
                          "batch": list(case.batch_shape), "dtype": case.dtype, "bytes": ev.outcome.loopback_bytes,
                          "allowance": verdict.loopback_allowance(case, ev.outcome.stages),
                          "weight_gather": (case.world_size - 1) * case.in_features * case.out_features * itemsize,
                          "crash": (ev.outcome.crash or "").splitlines()[:1],
                          "verdict": "pass" if not found else found[0].message.splitlines()[0][:160]}), flush=True)
pool.close()
"""


def run(impl: str, sizes: str, small: int) -> list[dict]:
    from tpconform.grading import bwrap
    from tpconform.grading.isolation import SuiteSnapshot

    snapshot = SuiteSnapshot()
    try:
        folder = os.path.dirname(os.path.abspath(impl)) if impl.endswith(".py") else ROOT
        spec = os.path.join(bwrap.SUBMISSION_MOUNT, os.path.basename(impl)) if impl.endswith(".py") else impl
        env = {"PATH": os.defpath, "PYTHONPATH": bwrap.SUITE_MOUNT, "PYTHONNOUSERSITE": "1", "HOME": "/tmp",
               "TMPDIR": "/tmp", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        argv = bwrap.command([sys.executable, "-P", "-c", INNER, spec, sizes, str(small)], suite_dir=snapshot.dir,
                             submission_dir=folder, cwd=bwrap.SUBMISSION_MOUNT, env=env)
        proc = bwrap.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        out, err = proc.communicate(timeout=900)
    finally:
        snapshot.remove()
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        print(err[-3000:], file=sys.stderr)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", action="append", default=None)
    p.add_argument("--world-sizes", default="2,3,4")
    p.add_argument("--small", type=int, default=3)
    a = p.parse_args()
    impls = a.impl or ["reference", os.path.join(FIXTURES, "weight_gather_forged.py"),
                       os.path.join(FIXTURES, "private_master.py")]
    for impl in impls:
        print(f"== {impl}")
        print(f"{'variant':22} {'ws':>2} {'in x out':>9} {'batch':>7} {'dtype':>8} {'bytes':>10} {'allowance':>10} "
              f"{'1 gather':>10}  verdict")
        for r in run(impl, a.world_sizes, a.small):
            print(f"{r['variant']:22} {r['ws']:>2} {str(r['in']) + 'x' + str(r['out']):>9} {str(r['batch']):>7} "
                  f"{r['dtype']:>8} {r['bytes']!s:>10} {r['allowance']:>10} {r['weight_gather']:>10}  "
                  f"{r['crash'][0] if r['crash'] else r['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
