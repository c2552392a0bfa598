"""Time to find each seeded bug: examples and seconds the suite needs, as a user runs it.

    python benchmarks/time_to_find.py [--bugs NAME ...] [--world-sizes 1-8] [--tp-timeout 20]
                                      [--shrink-budget 30] [--out benchmarks/results/time_to_find.json]

For every bug in ``impls/zoo`` (one layer on the whole world) it runs the property test that should
catch it the way ``pytest --impl=<bug> --tp-profile=ci`` does: the ``ci`` profile's settings
(derandomized, so every run draws the same examples), the suite's strategies (``Suite.cases``) for
the bug's variant, default world sizes and dtypes — except that it keeps generating until the first
counterexample instead of stopping at the profile's 15 examples. It prints, per bug, the examples and
seconds to the first counterexample and to the end of shrinking, and writes a JSON file.

Goal (issue 3): every bug found in under 10 s with the default profile on a 2-core machine.

Shrinking re-runs candidate cases; one that hangs costs ``--tp-timeout``. Once ``--shrink-budget``
seconds have passed since the first counterexample, unseen candidates are reported as passing so the
shrinker stops (the minimal case printed is then the smallest found within the budget).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hypothesis import Verbosity, given, settings
from tpconform.engine import profiles
from tpconform.engine.suite import Suite
from tpconform.impls.zoo import ZOO
from tpconform.spec.options import parse_world_sizes
from tpconform.strategies import VARIANTS
from tpconform.transport.harness import GroupPool

VARIANT = {str(v): v for v in VARIANTS}
UNTIL_FOUND = 100_000  # max_examples: generate until the first counterexample
GOAL_S = 10.0


class Found(AssertionError):
    """Raised by the search's test function on a counterexample (what Hypothesis then shrinks)."""


def time_to_find(bug, pool: GroupPool, world_sizes, shrink_budget_s: float) -> dict:
    suite = Suite(bug.name, pool, world_sizes=world_sizes)
    verdicts: dict = {}  # case -> caught?; a case is never run twice (the final replay included)
    first: dict = {}
    started = time.perf_counter()

    def caught(case) -> bool:
        if case not in verdicts:
            if first and time.perf_counter() - first["at"] > shrink_budget_s:
                verdicts[case] = False  # shrink budget spent: stop exploring
            else:
                verdicts[case] = bool(suite.violations(case, bug.caught_by))  # as the property test runs it
        return verdicts[case]

    @settings(profiles.build("ci", bug.name), max_examples=UNTIL_FOUND, print_blob=False,
              verbosity=Verbosity.quiet)
    @given(case=suite.cases(VARIANT[bug.variant]))
    def search(case):
        if caught(case):
            if not first:
                first.update(at=time.perf_counter(), examples=suite.examples)
            first["minimal"] = case
            raise Found(case.token())

    try:
        search()
    except Found:
        pass
    ended = time.perf_counter()
    if not first:
        return {"bug": bug.name, "property": bug.caught_by, "found": False, "examples": suite.examples,
                "seconds": round(ended - started, 3)}
    return {
        "bug": bug.name,
        "property": bug.caught_by,
        "variant": bug.variant,
        "found": True,
        "examples_to_first": first["examples"],
        "seconds_to_first": round(first["at"] - started, 3),
        "examples_with_shrinking": suite.examples,
        "seconds_with_shrinking": round(ended - started, 3),
        "shrink_budget_hit": ended - first["at"] > shrink_budget_s,
        "minimal_case": first["minimal"].token(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bugs", nargs="*", help="bug names (default: every one-layer bug in the zoo)")
    ap.add_argument("--world-sizes", default="1-8", help="as pytest's --world-sizes (default: 1-8)")
    ap.add_argument("--tp-timeout", type=float, default=20.0, help="as pytest's --tp-timeout (default: 20)")
    ap.add_argument("--shrink-budget", type=float, default=30.0, help="seconds of shrinking per bug (default: 30)")
    ap.add_argument("--out", default=os.path.join("benchmarks", "results", "time_to_find.json"))
    args = ap.parse_args(argv)

    bugs = [b for b in ZOO if b.variant in VARIANT and (not args.bugs or b.name in args.bugs)]
    world_sizes = parse_world_sizes(args.world_sizes)
    pool = GroupPool(timeout_s=args.tp_timeout)
    t = time.perf_counter()
    for ws in world_sizes:  # start every group first: the search is measured, not the start-up
        pool.get(ws)
    print(f"started groups for world sizes {world_sizes} in {time.perf_counter() - t:.1f} s")
    print(f"{'bug':<36} {'property':<40} {'ex→1st':>7} {'s→1st':>7} {'ex+shr':>7} {'s+shr':>7}")
    rows = []
    try:
        for bug in bugs:
            row = time_to_find(bug, pool, world_sizes, args.shrink_budget)
            rows.append(row)
            if row["found"]:
                flag = "" if row["seconds_to_first"] < GOAL_S else "  (over the goal)"
                print(f"{bug.name:<36} {bug.caught_by:<40} {row['examples_to_first']:>7} "
                      f"{row['seconds_to_first']:>7.2f} {row['examples_with_shrinking']:>7} "
                      f"{row['seconds_with_shrinking']:>7.2f}{flag}", flush=True)
            else:
                print(f"{bug.name:<36} {bug.caught_by:<40} NOT FOUND after {row['examples']} examples", flush=True)
    finally:
        pool.close()
    found = [r for r in rows if r["found"]]
    worst = max((r["seconds_to_first"] for r in found), default=0.0)
    within = sum(r["seconds_to_first"] < GOAL_S for r in found)
    print(f"{len(found)}/{len(rows)} found; {within}/{len(rows)} under {GOAL_S:.0f} s; slowest {worst:.2f} s")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                               "platform": platform.platform()},
                   "settings": {"profile": "ci", "world_sizes": world_sizes, "tp_timeout_s": args.tp_timeout,
                                "shrink_budget_s": args.shrink_budget, "goal_s": GOAL_S},
                   "bugs": rows}, fh, indent=2)
    print(f"wrote {args.out}")
    return 0 if len(found) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
