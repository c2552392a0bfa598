"""The memory watch reads a group waiting for its next message less often (it cost the verdict 14 % of a core
for a default run's idle groups), yet still kills a tree that grows between examples; a group at work is
read every ``INTERVAL_S``."""

import select
import subprocess
import sys
import time

from tpconform.transport import memory_watch
from tpconform.transport.memory_watch import MemoryWatch

from tests.selftest.test_memory_watch_builds import HOLD

FAKE_PID = -4242  # no process: only this test's watch reads it (the run's own groups have watches too)


def _readings(monkeypatch) -> list:
    calls: list = []
    real = memory_watch.tree_resident_bytes
    monkeypatch.setattr(memory_watch, "tree_resident_bytes",
                        lambda pid: calls.append(pid) or 0 if pid == FAKE_PID else real(pid))
    return calls


def test_an_idle_group_is_read_every_idle_interval_and_a_busy_one_every_interval(monkeypatch):
    calls = _readings(monkeypatch)
    watch = MemoryWatch({0: FAKE_PID}, limit=2**40, interval_s=0.01, idle_interval_s=0.3)
    try:
        watch.busy(False)
        time.sleep(0.2)  # the first idle reading may come at once
        calls.clear()
        time.sleep(0.9)
        idle = len(calls)
        watch.busy(True)
        time.sleep(0.02)
        calls.clear()
        time.sleep(0.6)
        busy = len(calls)
    finally:
        watch.stop()
    assert idle <= 4, f"{idle} readings in 0.9 s of an idle group read every 0.3 s"
    assert busy >= 5, f"{busy} readings in 0.6 s of a busy group read every 0.01 s"


def test_a_tree_growing_while_its_group_is_idle_is_still_killed():
    p = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    watch = MemoryWatch({0: p.pid}, limit=100 * 2**20, interval_s=0.05, idle_interval_s=0.2)
    watch.busy(False)
    try:
        select.select([p.stdout], [], [], 60)  # filled (or killed on the way)
        p.wait(10)  # killed within an idle interval or so of passing the limit
    finally:
        watch.stop()
        p.kill()
    assert watch.breach(0) and "over the limit of 0.10 GiB" in watch.breach(0), watch.breach(0)
