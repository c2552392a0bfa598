"""A rank left behind once another finished the example: asleep in a collective the finished rank skipped (a
bug: failed after a short grace) or starved of CPU on a loaded machine (no bug: it gets more grace while it
works, never past the example's timeout). A rank left behind once another raised: asleep (failed at once, not
after the whole error grace: a first attempt's crashes each cost that wait), or working (it keeps the grace, so
its own reply reaches the report). Real processes stand for the ranks; the harness's own wait judges."""

import multiprocessing as mp
import time
from types import SimpleNamespace

import pytest
from tpconform.transport import wire
from tpconform.transport.contract import DONE_GRACE_MIN_S, ERROR_GRACE_S
from tpconform.transport.cpu_progress import still_working
from tpconform.transport.harness import GroupFailure, ProcessGroup

from tests.selftest.fixtures.late_rank import reply_late

LATE_S = DONE_GRACE_MIN_S + 2.0  # how far behind the late rank replies: past one grace


def _start(busy_s: float, asleep_s: float, reply: dict = {"ok": True}):  # noqa: B006 (read, never changed)
    """A stand-in rank, started and ready (its late part waits for "go"): (our end of its pipe, its process)."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=reply_late, args=(theirs, busy_s, asleep_s, wire.encode(reply)), daemon=True)
    p.start()
    assert ours.poll(120) and ours.recv_bytes() == b"ready"
    return ours, p


def _group(late_busy_s: float, late_asleep_s: float, first_reply: dict = {"ok": True}):  # noqa: B006
    """Rank 0 late (busy, then asleep), rank 1 replying ``first_reply`` at once: (the group, the processes)."""
    ranks, procs = [], []
    for busy, asleep, reply in ((late_busy_s, late_asleep_s, {"ok": True}), (0.0, 0.0, first_reply)):
        ours, p = _start(busy, asleep, reply)
        procs.append(p)
        ranks.append(SimpleNamespace(conn=ours, process=p))
    for rank in ranks:
        rank.conn.send_bytes(b"go")  # both started: the late part begins now, with the wait
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


def test_working_is_told_from_sleeping():
    procs = []
    try:
        for busy, asleep in ((30.0, 0.0), (0.0, 30.0)):
            ours, p = _start(busy, asleep)
            ours.send_bytes(b"go")
            procs.append(p)
        busy_proc, asleep_proc = procs
        # the sleeper reads as asleep once it got to its sleep (it may still be taking "go" in: looks 0.5 s apart)
        assert any(time.sleep(0.5) or not still_working([asleep_proc.pid]) for _ in range(20))
        assert all(still_working([busy_proc.pid]) for _ in range(3))
        assert not still_working([])
    finally:
        for p in procs:
            p.kill()
            p.join()


@pytest.mark.parametrize("busy", [True, False], ids=["working-on", "asleep"])
def test_once_a_rank_raised_a_rank_asleep_fails_at_once_and_a_working_one_keeps_its_grace(busy):
    late = ERROR_GRACE_S / 4  # well inside the error grace: a working rank's reply must still arrive
    group, procs = _group(late if busy else 0.0, 0.0 if busy else 30.0, first_reply={"ok": False, "error": "boom"})
    try:
        started = time.monotonic()
        if busy:
            replies = group._gather("the example", {0: None, 1: None}, timeout_s=60.0)
            assert set(replies) == {0, 1}
        else:
            with pytest.raises(GroupFailure, match=r"rank\(s\) \[0\] stopped working without replying"):
                group._gather("the example", {0: None, 1: None}, timeout_s=60.0)
            assert time.monotonic() - started < ERROR_GRACE_S / 2  # not the whole grace: ~0.15 s of looks
    finally:
        for p in procs:
            p.kill()
            p.join()
