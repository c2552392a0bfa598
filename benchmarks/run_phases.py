"""A pytest plugin that prints, on stderr, when each phase of the run begins: the seconds since the
process began (so pytest's own import and the plugins' count too), at configure, the session's start
(after tpconform's: ``describe`` done), collection, the first test, the session's end, and exit.

    python -m pytest -p benchmarks.run_phases --impl=reference -q     # from the repository root

docs/PROFILE.md compares a default run's phases before and after the start-up changes of issue 29.
"""

from __future__ import annotations

import atexit
import os
import sys
import time


def _seconds_since_start() -> float:
    with open(f"/proc/{os.getpid()}/stat") as fh:
        start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as fh:
        boot = float(fh.read().split("btime ")[1].split()[0])
    return time.time() - (boot + start_ticks / os.sysconf("SC_CLK_TCK"))


def _say(what: str) -> None:
    sys.stderr.write(f"PHASE {what}: {_seconds_since_start():.1f} s\n")
    sys.stderr.flush()


def pytest_configure(config) -> None:
    _say("configure")


def pytest_sessionstart(session) -> None:
    _say("session start")


def pytest_collection_finish(session) -> None:
    _say("collection done")


def pytest_runtestloop(session) -> None:
    _say("first test")


def pytest_sessionfinish(session) -> None:
    _say("session finish")


def pytest_unconfigure(config) -> None:
    _say("unconfigure")
    atexit.register(_say, "exit")
