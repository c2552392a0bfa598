"""Persistent process groups: one per world size, started once, reused for every example.

The verdict process hosts a ``TCPStore`` on an ephemeral loopback port (no port guessing, so
parallel runs never collide) and starts one worker per rank from a ``forkserver`` that has torch
preloaded (never ``fork``: a forked child can inherit a lock held by the store's thread).
Every wait is bounded: a rank that hangs or dies fails the example with every rank's Python stack,
and the group is torn down and started again on its next use.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any, Optional

from conformance import wire

DEFAULT_TIMEOUT_S = 20.0


class GroupFailure(Exception):
    """The example could not be run to completion on every rank (hang, crash, protocol error)."""


@dataclass
class _Rank:
    process: Any
    conn: Any
    lifeline: Any
    stack_path: str


@dataclass
class ProcessGroup:
    """``world_size`` worker processes joined in one Gloo group."""

    world_size: int
    timeout_s: float
    ranks: list[_Rank] = field(default_factory=list)
    store: Any = None
    tmpdir: str = ""
    examples_run: int = 0

    @classmethod
    def start(cls, world_size: int, timeout_s: float) -> "ProcessGroup":
        import torch.distributed as dist

        ctx = _context()
        group = cls(world_size, timeout_s)
        group.tmpdir = tempfile.mkdtemp(prefix=f"tpconform-ws{world_size}-")
        group.store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                                    timeout=timedelta(seconds=timeout_s))
        from conformance import worker

        for rank in range(world_size):
            parent_end, child_end = ctx.Pipe()
            life_parent, life_child = ctx.Pipe()
            stack_path = os.path.join(group.tmpdir, f"rank{rank}.stack")
            proc = ctx.Process(
                target=worker.main,
                args=(rank, world_size, group.store.port, child_end, life_child, stack_path,
                      timeout_s + 10.0),
                name=f"tpconform-ws{world_size}-rank{rank}",
                daemon=True,
            )
            with _main_module_hidden():
                proc.start()
            child_end.close()
            life_child.close()
            group.ranks.append(_Rank(proc, parent_end, life_parent, stack_path))
        _live_groups.add(group)
        group._gather("start-up", {r: None for r in range(world_size)}, timeout_s + 30.0)
        return group

    # -- messaging ---------------------------------------------------------------------------
    def request(self, messages: dict[int, dict], timeout_s: Optional[float] = None) -> dict[int, Any]:
        """Send one message to each rank named, wait (bounded) for every reply."""
        for rank, message in messages.items():
            try:
                self.ranks[rank].conn.send_bytes(wire.encode(message))
            except (BrokenPipeError, OSError):
                self._fail(f"rank {rank} is gone (its pipe is closed)", [rank])
        return self._gather("the example", messages, timeout_s or self.timeout_s)

    def _gather(self, what: str, expecting: dict[int, Any], timeout_s: float) -> dict[int, Any]:
        deadline = time.monotonic() + timeout_s
        replies: dict[int, Any] = {}
        while len(replies) < len(expecting):
            pending = [r for r in expecting if r not in replies]
            waitables = {}
            for r in pending:
                waitables[self.ranks[r].conn] = ("msg", r)
                waitables[self.ranks[r].process.sentinel] = ("dead", r)
            remaining = deadline - time.monotonic()
            ready = wait(list(waitables), timeout=max(remaining, 0)) if remaining > 0 else []
            if not ready:
                self._fail(f"timed out after {timeout_s:.1f} s waiting for {what} on rank(s) {pending}", pending)
            for obj in ready:
                kind, r = waitables[obj]
                if r in replies:
                    continue
                if kind == "msg":
                    try:
                        replies[r] = wire.decode(self.ranks[r].conn.recv_bytes())
                    except (EOFError, OSError):
                        continue  # the sentinel reports the death
                    except wire.WireError as exc:
                        self._fail(f"rank {r} sent a message outside the wire format: {exc}", [r])
                else:
                    try:  # it may have replied just before exiting
                        if self.ranks[r].conn.poll(0):
                            replies[r] = wire.decode(self.ranks[r].conn.recv_bytes())
                            continue
                    except (EOFError, OSError, wire.WireError):
                        pass
                    code = self.ranks[r].process.exitcode
                    time.sleep(0.05)  # let other ranks finish dying or replying
                    self._fail(f"rank {r} died during {what} (exit code {code})", [r])
        return replies

    def _fail(self, reason: str, culprits: list[int]) -> None:
        stacks = self.dump_stacks()
        self.close()
        raise GroupFailure(f"{reason}\n{stacks}")

    def dump_stacks(self) -> str:
        """Every live rank's Python stack, via faulthandler on SIGUSR1."""
        import signal

        sizes = {}
        for r, rank in enumerate(self.ranks):
            if rank.process.is_alive():
                sizes[r] = os.path.getsize(rank.stack_path) if os.path.exists(rank.stack_path) else 0
                try:
                    os.kill(rank.process.pid, signal.SIGUSR1)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
        out = []
        for r, rank in enumerate(self.ranks):
            if r not in sizes:
                out.append(f"--- rank {r}: exited (code {rank.process.exitcode})")
                continue
            try:
                with open(rank.stack_path) as fh:
                    fh.seek(sizes[r])
                    text = fh.read().strip()
            except OSError:
                text = ""
            out.append(f"--- rank {r} stack:\n{text or '(no stack written)'}")
        return "\n".join(out)

    @property
    def healthy(self) -> bool:
        return bool(self.ranks) and all(r.process.is_alive() for r in self.ranks)

    def close(self) -> None:
        for rank in self.ranks:
            try:
                if rank.process.is_alive():
                    rank.conn.send_bytes(wire.encode({"cmd": "stop"}))
            except OSError:
                pass
        deadline = time.monotonic() + 1.0
        for rank in self.ranks:
            rank.process.join(max(deadline - time.monotonic(), 0))
        for rank in self.ranks:
            if rank.process.is_alive():
                rank.process.kill()
                rank.process.join(1.0)
            for c in (rank.conn, rank.lifeline):
                try:
                    c.close()
                except OSError:
                    pass
        self.ranks = []
        self.store = None
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""
        _live_groups.discard(self)

    def __hash__(self) -> int:
        return id(self)


@contextlib.contextmanager
def _main_module_hidden():
    """Start workers without re-importing the parent's ``__main__`` (a user script, stdin, …)."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


_live_groups: set = set()
_ctx = None


def _context():
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(["conformance.worker", "impls.reference"])
    return _ctx


@atexit.register
def _close_all() -> None:
    for group in list(_live_groups):
        group.close()


class GroupPool:
    """One live group per world size; a broken group is replaced on its next use."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.groups: dict[int, ProcessGroup] = {}
        self.starts = 0

    def get(self, world_size: int) -> ProcessGroup:
        group = self.groups.get(world_size)
        if group is None or not group.healthy:
            if group is not None:
                group.close()
            group = ProcessGroup.start(world_size, self.timeout_s)
            self.starts += 1
            self.groups[world_size] = group
        return group

    def close(self) -> None:
        for group in self.groups.values():
            group.close()
        self.groups.clear()
