"""Where one example's time goes, parent and workers: a profile of a default-run test file.

    python benchmarks/profile_example.py [--impl reference] [--world-sizes 2] [--top 12]
                                         [tests/properties/test_forward.py ...]

Runs pytest in this process under ``cProfile`` (the parent: Hypothesis, the engine, the float64 truth,
the comparisons, the wait on the ranks) with ``TPCONFORM_PROFILE_DIR`` set, so each rank profiles its
own message loop (``tpconform.transport.worker``). It prints, per example:

- the parent's wall time split by where it is spent (own package areas, Hypothesis, torch, waiting on
  the ranks' replies), and its heaviest functions;
- rank 0's time in the family commands (building the layer, forward, backward, collectives) against
  its time idle between messages.

The numbers are wall-clock on a shared machine: read them as shares, and say the load
(``/proc/loadavg``) beside them. docs/PROFILE.md keeps a measured run and what was cut after it.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

# this folder holds a benchmarks/xdist.py, which would shadow pytest-xdist for the pytest run below
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

WAITS = ("posix.read", "'poll' of 'select.poll'", "select.select", "posix.waitpid")  # blocked in the kernel
AREAS = (  # (label, substring of a profiled function's file) in the order they are tried
    ("waiting (on the ranks' replies, group start-up)", "multiprocessing/connection.py"),
    ("Hypothesis", "/hypothesis/"),
    ("tpconform: verdict and truth (families/, spec/)", "/families/"),
    ("tpconform: verdict and truth (families/, spec/)", "/spec/"),
    ("tpconform: engine", "/engine/"),
    ("tpconform: transport (parent side)", "/transport/"),
    ("torch (parent side)", "/torch/"),
    ("pytest and plugins", "/_pytest/"),
    ("pytest and plugins", "/pluggy/"),
)


def _own_time_by_area(stats: pstats.Stats) -> dict[str, float]:
    """Each function's own (not cumulative) time, summed by area: the areas add up to the total."""
    totals: dict[str, float] = {}
    for (path, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if any(w in name for w in WAITS):
            label = AREAS[0][0]
        else:
            label = next((lab for lab, part in AREAS if part in path), "other (imports, builtins, stdlib)")
        totals[label] = totals.get(label, 0.0) + own
    return totals


def _calls(stats: pstats.Stats, name: str, path_part: str) -> tuple[int, float]:
    """(calls, cumulative seconds) of the functions called ``name`` in files containing ``path_part``."""
    n, cum = 0, 0.0
    for (path, _line, fn), (_cc, nc, _own, c, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if fn == name and path_part in path:
            n, cum = n + nc, cum + c
    return n, cum


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tests", nargs="*", default=["tests/properties/test_forward.py"])
    ap.add_argument("--impl", default="reference")
    ap.add_argument("--world-sizes", default="2")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)

    import pytest

    with tempfile.TemporaryDirectory(prefix="tpconform-profile-") as folder:
        os.environ["TPCONFORM_PROFILE_DIR"] = folder  # before the plugin starts any worker (they inherit it)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        code = pytest.main([*args.tests, f"--impl={args.impl}", f"--world-sizes={args.world_sizes}",
                            "-q", "-p", "no:cacheprovider"])
        profiler.disable()
        wall = time.perf_counter() - started
        parent = pstats.Stats(profiler)
        ranks = sorted(f for f in os.listdir(folder) if f.startswith("rank0."))
        worker = None
        for f in ranks:
            try:  # a rank killed at the end while it wrote its dump leaves a cut file: its earlier dumps are lost
                loaded = pstats.Stats(os.path.join(folder, f))
            except (EOFError, ValueError, TypeError):
                continue
            worker = loaded if worker is None else worker.add(loaded)

        examples = 0
        if worker is not None:
            examples, _ = _calls(worker, "family_command", "transport/worker.py")
        per = max(examples, 1)
        print(f"\n{examples} examples reached rank 0 in {wall:.1f} s of wall time "
              f"(load {open('/proc/loadavg').read().split()[0]}); per example {1000 * wall / per:.1f} ms")
        print("\nparent, own time by area (ms per example):")
        for label, seconds in sorted(_own_time_by_area(parent).items(), key=lambda kv: -kv[1]):
            print(f"  {1000 * seconds / per:8.2f}  {label}")
        print(f"\nparent, heaviest functions by own time (top {args.top}; builtins such as poll/select are waits):")
        parent.sort_stats("tottime").print_stats(args.top)
        print(f"\nparent, the suite's heaviest functions by cumulative time (top {args.top}):")
        parent.sort_stats("cumulative").print_stats(r"conformance/|impls/|tpconform", args.top)
        if worker is not None:
            recv_n, idle = _calls(worker, "recv_bytes", "multiprocessing/connection.py")
            commands = [(fn, cum) for (path, _l, fn), (_cc, _nc, _own, cum, _c) in worker.stats.items()  # type: ignore[attr-defined]
                        if path.endswith("worker.py") and "/families/" in path]
            print(f"rank 0: {recv_n} messages; waiting for the next one {1000 * idle / per:.2f} ms per example")
            for fn, cum in sorted(commands, key=lambda kv: -kv[1])[:args.top]:
                print(f"  {1000 * cum / per:8.2f} ms  {fn}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
