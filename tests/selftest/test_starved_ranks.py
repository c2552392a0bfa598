"""A rank left behind once another finished the example: asleep in a collective the finished rank skipped (a
bug: failed after a short grace) or starved of CPU on a loaded machine (no bug: it gets more grace while it
runs, never past the example's timeout). Real processes stand for the ranks; the harness's own wait judges."""

import multiprocessing as mp
import time
from types import SimpleNamespace

import pytest
from tpconform.transport import wire
from tpconform.transport.contract import DONE_GRACE_MIN_S
from tpconform.transport.cpu_progress import cpu_state, still_working
from tpconform.transport.harness import GroupFailure, ProcessGroup

from tests.selftest.fixtures.late_rank import reply_late

LATE_S = DONE_GRACE_MIN_S + 2.0  # how far behind the late rank replies: past one grace


def _start(busy_s: float, asleep_s: float):
    """A stand-in rank, started and ready: (our end of its pipe, its process)."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=reply_late, args=(theirs, busy_s, asleep_s, wire.encode({"ok": True})), daemon=True)
    p.start()
    assert ours.poll(120) and ours.recv_bytes() == b"ready"
    return ours, p


def _group(late_busy_s: float, late_asleep_s: float) -> tuple[ProcessGroup, list]:
    ranks, procs = [], []
    for busy, asleep in ((late_busy_s, late_asleep_s), (0.0, 0.0)):
        ours, p = _start(busy, asleep)
        procs.append(p)
        ranks.append(SimpleNamespace(conn=ours, process=p))
    group = object.__new__(ProcessGroup)
    group.ranks = ranks

    def fail(reason, culprits):
        raise GroupFailure(reason)

    group._fail = fail
    return group, procs


@pytest.mark.parametrize("busy", [True, False], ids=["starved-but-working", "asleep"])
def test_a_rank_behind_gets_more_grace_only_while_it_works(busy):
    group, procs = _group(LATE_S if busy else 0.0, 0.0 if busy else LATE_S)
    try:
        if busy:
            replies = group._gather("the example", {0: None, 1: None}, timeout_s=60.0)
            assert set(replies) == {0, 1}
        else:
            with pytest.raises(GroupFailure, match=r"rank\(s\) \[0\] did not reply within the grace period"):
                group._gather("the example", {0: None, 1: None}, timeout_s=60.0)
    finally:
        for p in procs:
            p.kill()
            p.join()


def test_the_cpu_states_tell_work_from_sleep():
    _, busy = _start(30.0, 0.0)
    _, asleep = _start(0.0, 30.0)
    try:
        before = {"busy": cpu_state(busy.pid), "asleep": cpu_state(asleep.pid)}
        time.sleep(0.5)
        now = {"busy": cpu_state(busy.pid), "asleep": cpu_state(asleep.pid)}
        assert still_working({"busy": before["busy"]}, {"busy": now["busy"]})
        assert not still_working({"asleep": before["asleep"]}, {"asleep": now["asleep"]})
        assert not still_working({}, {"gone": None})
    finally:
        for p in (busy, asleep):
            p.kill()
            p.join()
