"""Whether a process is still working: its CPU time and its threads' run states, read from Linux ``/proc``.

A rank left behind once another finished the example is either waiting in a collective the finished rank
skipped (asleep: no CPU, no runnable thread) or merely starved on a loaded machine (runnable, or gaining CPU
time). The harness gives the second more of its grace (``harness._gather``), never past the example's timeout.
Once a rank raised, the same look tells the others apart: asleep (in a collective the failed rank never
joined: the group fails at once) or working (on to their own reply: they keep the error grace).
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple, Optional

from tpconform.transport.proctree import stat_fields

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SAMPLE_S = 0.2  # how far apart the two looks are
WORKING_CPU_SHARE = 0.1  # the share of one CPU gained between them that counts as work (a sleeping waiter: ~none)


class CpuState(NamedTuple):
    cpu_s: float  # user + system time of the whole thread group
    runnable: bool  # some thread is running or waiting for a CPU ("R")


def cpu_state(pid: int) -> Optional[CpuState]:
    """``pid``'s CPU time and whether any of its threads is runnable (``None``: unreadable, or gone)."""
    fields = stat_fields(f"/proc/{pid}/stat")
    if fields is None or len(fields) < 13:
        return None
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    runnable = fields[0] == b"R"
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tasks = []
    for tid in tasks:
        t = stat_fields(f"/proc/{pid}/task/{tid}/stat")
        if t and t[0] == b"R":
            runnable = True
            break
    return CpuState(cpu, runnable)


def still_working(pids, window_s: float = SAMPLE_S) -> bool:
    """Whether any of ``pids`` is working now: some thread runnable at either of two looks ``window_s`` apart, or
    CPU time gained between them. Looked at when a grace ends, not since it began: a rank that worked a while and
    then went to sleep in a collective reads as asleep."""
    first = {pid: cpu_state(pid) for pid in pids}
    if any(state is not None and state.runnable for state in first.values()):
        return True
    time.sleep(window_s)
    for pid, before in first.items():
        now = cpu_state(pid)
        gained = now.cpu_s - before.cpu_s if now is not None and before is not None else 0.0
        if now is not None and (now.runnable or gained >= WORKING_CPU_SHARE * window_s):
            return True
    return False
