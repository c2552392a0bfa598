"""Wall time and CPU seconds of a command's whole process tree, workers and forkserver included.

    python benchmarks/tree_time.py [--repeat N] -- pytest --impl=reference -q

``/usr/bin/time`` counts only the descendants that were waited for by their parents: a rank forked
by the forkserver, or the forkserver itself once the verdict has exited, is reaped by init and its CPU
time is lost. Here this process is a child subreaper (``PR_SET_CHILD_SUBREAPER``): every orphan of the
tree is re-parented to it and reaped by it, so ``RUSAGE_CHILDREN`` holds the whole tree. On a shared
machine the CPU seconds move less with load than the wall time does; the load average is printed beside
each run.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _reap_all(deadline_s: float = 60.0) -> None:
    """Wait (bounded) for every process re-parented here; whatever is still alive then is reported."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)
    left = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid():
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    words = fh.read().replace(b"\0", b" ").decode(errors="replace")
                left.append(f"{entry}: {words[:120]}")
        except (OSError, ValueError, IndexError):
            continue
    print(f"tree_time: descendants still alive {deadline_s:.0f} s after the command ended (left behind by it):\n  "
          + "\n  ".join(left), file=sys.stderr)


def run_once(command: list[str]) -> tuple[int, float, float]:
    """(exit code, wall seconds, user+sys CPU seconds of the whole tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    code = subprocess.call(command)
    wall = time.perf_counter() - t0
    _reap_all()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command")
    _become_subreaper()
    worst = 0
    for i in range(args.repeat):
        load = open("/proc/loadavg").read().split()[0]
        code, wall, cpu = run_once(command)
        print(f"tree_time: run {i + 1}: exit {code}, wall {wall:.1f} s, CPU (user+sys, whole tree) {cpu:.1f} s, "
              f"load average {load} at start, {open('/proc/loadavg').read().split()[0]} at end", flush=True)
        worst = worst or code
    return worst


if __name__ == "__main__":
    sys.exit(main())
