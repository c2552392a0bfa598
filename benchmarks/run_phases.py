"""A pytest plugin that prints, on stderr, when each phase of the run begins: the seconds since the
process began (so pytest's own import and the plugins' count too), and this process's own CPU seconds, at configure, the session's start
(after tpconform's: ``describe`` done), collection, the first test, the session's end, and exit.

    python -m pytest -p benchmarks.run_phases --impl=reference -q     # from the repository root

docs/PROFILE.md compares a default run's phases before and after the start-up changes of issue 29.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time

import pytest


def _seconds_since_start() -> float:
    with open(f"/proc/{os.getpid()}/stat") as fh:
        start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as fh:
        boot = float(fh.read().split("btime ")[1].split()[0])
    return time.time() - (boot + start_ticks / os.sysconf("SC_CLK_TCK"))


def _say(what: str) -> None:
    # this process's own CPU (user+sys): the rest of the tree's (the ranks', the forkserver's) is
    # benchmarks/tree_time.py's total less this
    cpu = time.process_time()
    sys.stderr.write(f"PHASE {what}: {_seconds_since_start():.1f} s (this process's CPU {cpu:.1f} s)\n")
    sys.stderr.flush()


class _Collector:
    """The garbage collector's own time in this process (``gc.callbacks``), and its runs by generation."""

    seconds = 0.0
    runs = [0, 0, 0]
    started = 0.0

    @classmethod
    def timer(cls, phase: str, info: dict) -> None:
        if phase == "start":
            cls.started = time.perf_counter()
        else:
            cls.seconds += time.perf_counter() - cls.started
            cls.runs[info["generation"]] += 1


def pytest_configure(config) -> None:
    _say("configure")
    gc.callbacks.append(_Collector.timer)


def pytest_sessionstart(session) -> None:
    _say("session start")


def pytest_collection_finish(session) -> None:
    _say("collection done")


def pytest_runtestloop(session) -> None:
    _say("first test")


_BY_FAMILY: dict[str, list[float]] = {}  # family -> [this process's CPU, wall] in its tests' calls


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Each test's call (its examples), this process's CPU and the wall, summed by the family it judges."""
    marker = item.get_closest_marker("tp_property")
    family = marker.args[0] if marker is not None else "(other)"
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    spent = _BY_FAMILY.setdefault(family, [0.0, 0.0])
    spent[0] += time.process_time() - cpu
    spent[1] += time.perf_counter() - wall


def pytest_sessionfinish(session) -> None:
    _say("session finish")
    sys.stderr.write(f"PHASE garbage collection so far: {_Collector.seconds:.1f} s in {_Collector.runs} runs (generations 0/1/2)\n")
    for family, (cpu, wall) in sorted(_BY_FAMILY.items(), key=lambda kv: -kv[1][1]):
        sys.stderr.write(f"PHASE tests of {family}: {wall:.1f} s wall, this process's CPU {cpu:.1f} s\n")


def pytest_unconfigure(config) -> None:
    _say("unconfigure")
    atexit.register(_say, "exit")
