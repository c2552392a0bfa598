"""Persistent process groups: one per world size, started once, reused for every example.

The verdict process hosts a ``TCPStore`` on an ephemeral loopback port (no port guessing, so
parallel runs never collide) and starts one worker per rank from a ``forkserver`` that has torch
preloaded (never ``fork``: a forked child can inherit a lock held by the store's thread).
Every wait is bounded: a rank that hangs or dies fails the example with every rank's Python stack,
and the group is torn down and started again on its next use.

Tear-down is by force, not by request: the worker, everything it forked (even in a new session),
and its process group are frozen and SIGKILLed (``tpconform.transport.proctree``). A worker never
outlives the verdict process either: its lifeline thread (``tpconform.transport.sandbox``) kills its
descendants and itself when the verdict's end of the lifeline pipe closes, and the forkserver
exits when the verdict does.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
from tpconform.transport import backends, forkserver, proctree, rank_walls, stacks, stale_locks, wire, worker
from tpconform.transport.contract import (  # noqa: F401 - GroupFailure, cut_text: the transport's, imported from here
    MAX_MESSAGE_BYTES,
    GroupFailure,
    ReplyWait,
    cut_text,
)
from tpconform.transport.cpu_progress import SAMPLE_S, still_working
from tpconform.transport.memory_watch import MemoryWatch

ERROR_LOOK_WINDOW_S = 0.1  # once a rank raised: how far apart the two looks at the others' work are

DEFAULT_TIMEOUT_S = 20.0
DEFAULT_MEMORY_LIMIT = 3 * 1024**3  # resident bytes per worker tree (tpconform.transport.memory_watch); a worker holds ~0.2 GiB


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
    memory_limit: Optional[int] = DEFAULT_MEMORY_LIMIT
    ranks: list[_Rank] = field(default_factory=list)
    store: Any = None
    tmpdir: str = ""
    examples_run: int = 0
    loaded_impls: set = field(default_factory=set)  # impl specs every rank has loaded (see Runner)
    memory_watch: Any = None  # tpconform.transport.memory_watch.MemoryWatch, when memory_limit is set
    _seq: int = 0
    _stack_offsets: dict = field(default_factory=dict)
    _held_fds: list = field(default_factory=list)  # descriptors of walled ranks' file folders

    @classmethod
    def start(cls, world_size: int, timeout_s: float,
              memory_limit: Optional[int] = DEFAULT_MEMORY_LIMIT, walls: bool = False) -> "ProcessGroup":
        """``walls``: each rank walls itself off from the others before it runs candidate code
        (``tpconform.transport.rank_walls``; grading in the sandbox)."""
        ctx = forkserver.context()
        group = cls(world_size, timeout_s, memory_limit)
        group.tmpdir = tempfile.mkdtemp(prefix=f"tpconform-ws{world_size}-")
        group.store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                                    timeout=timedelta(seconds=timeout_s))
        for rank in range(world_size):
            parent_end, child_end = ctx.Pipe()
            life_parent, life_child = ctx.Pipe()
            stack_path = worker_stack_path = os.path.join(group.tmpdir, f"rank{rank}.stack")
            if walls:  # the rank's files behind a folder it locks (rank_walls.locked_layout); read here through a descriptor
                worker_stack_path, stack_path = group._locked_files(rank)
            proc = ctx.Process(
                target=worker.main,
                args=(rank, world_size, group.store.port, child_end, life_child, worker_stack_path,
                      timeout_s + 10.0, timeout_s),
                kwargs={"capture_stderr": True, "walls": walls},
                name=f"tpconform-ws{world_size}-rank{rank}",
                daemon=True,
            )
            with forkserver.main_module_hidden():
                proc.start()
            child_end.close()
            life_child.close()
            group.ranks.append(_Rank(proc, parent_end, life_parent, stack_path))
        _live_groups.add(group)
        if memory_limit:
            group.memory_watch = MemoryWatch({r: rank.process.pid for r, rank in enumerate(group.ranks)}, memory_limit)
        group._mark_stacks()
        group._gather("start-up", {r: None for r in range(world_size)}, timeout_s + 30.0, synchronized=False)
        group._busy(False)
        return group

    # -- messaging ---------------------------------------------------------------------------
    def _locked_files(self, rank: int) -> tuple[str, str]:
        """A walled rank's stack files: the path the worker opens them by (before it locks the folder
        above them, ``rank_walls.raise_walls``), and the path this process reads them by (through a
        descriptor of their own folder, held here, which reaches them without crossing the locked one)."""
        files = rank_walls.locked_layout(os.path.join(self.tmpdir, f"rank{rank}"))
        fd = os.open(files, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._held_fds.append(fd)
        stale_locks.walled_roots.add(rank_walls.extension_folder(files))  # its builds, for the memory watch
        return os.path.join(files, f"rank{rank}.stack"), f"/proc/self/fd/{fd}/rank{rank}.stack"

    def request(self, messages: dict[int, dict], timeout_s: Optional[float] = None,
                what: str = "the example", synchronized: bool = True,
                while_waiting: Optional[Callable[[], None]] = None) -> dict[int, Any]:
        """Send one message to each rank named, run ``while_waiting`` (the verdict's own work, done
        while the ranks work), then wait (bounded) for every reply.

        Each message carries a sequence number that the reply must echo, so a stray or forged
        extra message can never be taken for the answer to a later request. Once a rank has
        replied with an error, the others get at most :data:`ERROR_GRACE_S` more (they are likely
        waiting in a collective the failed rank will never join), not the whole timeout: the group
        fails as soon as none of them is working (``cpu_progress``), a look every
        ``ERROR_FIRST_LOOK_S``."""
        self._seq += 1
        self._mark_stacks()
        self._busy(True)
        try:
            return self._request(messages, timeout_s, what, synchronized, while_waiting)
        finally:
            self._busy(False)

    def _busy(self, busy: bool) -> None:
        """Tell the memory watch whether the ranks are working (it reads idle groups less often)."""
        if self.memory_watch is not None:
            self.memory_watch.busy(busy)

    def _request(self, messages: dict[int, dict], timeout_s: Optional[float], what: str, synchronized: bool,
                 while_waiting: Optional[Callable[[], None]]) -> dict[int, Any]:
        encoded: dict[int, bytes] = {}  # one encoding per distinct message (most requests send every rank the same)
        for rank, message in messages.items():
            if id(message) not in encoded:
                encoded[id(message)] = wire.encode({**message, "seq": self._seq})
            try:
                self.ranks[rank].conn.send_bytes(encoded[id(message)])
            except (BrokenPipeError, OSError):
                self._fail(f"rank {rank} is gone ({self._memory_breach(rank) or 'its pipe is closed'})", [rank])
        if while_waiting is not None:
            while_waiting()
        return self._gather(what, messages, timeout_s or self.timeout_s, seq=self._seq, synchronized=synchronized)

    def _gather(self, what: str, expecting: dict[int, Any], timeout_s: float,
                seq: Optional[int] = None, synchronized: bool = True) -> dict[int, Any]:
        waiting = ReplyWait(what, expecting, timeout_s, seq, synchronized,
                            looks_at_work=backends.selected() != "nccl")  # a rank waiting under NCCL spins
        while not waiting.done:
            waitables = {}
            for r in waiting.pending:
                waitables[self.ranks[r].conn] = ("msg", r)
                waitables[self.ranks[r].process.sentinel] = ("dead", r)
            # past the deadline too: a reply that came meanwhile (during a look at the ranks' work) is read
            ready = wait(list(waitables), timeout=max(waiting.remaining(), 0))
            if not ready:
                if waiting.in_done_grace() and self._still_working(waiting):
                    waiting.extend_done_grace()  # starved, not stuck: a loaded machine is no bug
                    continue
                if waiting.in_error_grace() and self._still_working(waiting, window_s=ERROR_LOOK_WINDOW_S):
                    waiting.extend_error_grace()  # a rank raised; the others may still reply (their own error)
                    continue
                self._fail(waiting.expired(), waiting.pending)
            for obj in ready:
                kind, r = waitables[obj]
                if r in waiting.replies:
                    continue
                if kind == "msg":
                    try:
                        reply = wire.decode(self.ranks[r].conn.recv_bytes(MAX_MESSAGE_BYTES))
                    except (EOFError, OSError) as exc:
                        if "bad message length" in str(exc):
                            self._fail(f"rank {r} sent a message over {MAX_MESSAGE_BYTES >> 20} MiB during {what}", [r])
                        continue  # the sentinel reports the death
                    except wire.WireError as exc:
                        self._fail(f"rank {r} sent a message outside the wire format: {exc}", [r])
                    self._accept(r, reply, waiting)
                else:
                    try:  # it may have replied just before exiting
                        if self.ranks[r].conn.poll(0):
                            data = self.ranks[r].conn.recv_bytes(MAX_MESSAGE_BYTES)
                            self._accept(r, wire.decode(data), waiting)
                            continue
                    except (EOFError, OSError, wire.WireError):
                        pass
                    time.sleep(0.05)  # let other ranks finish dying or replying
                    if self._memory_breach(r):
                        self._fail(f"rank {r} {self._death_of(r)} during {what}", [r])
                    self._fail(self._died(r, what), [r])
        return waiting.replies

    def _died(self, r: int, what: str) -> str:
        """Why rank ``r`` died mid-request: a collective mismatch, named with the backend's own
        message, when its stderr says so; else its death, with the last lines it wrote to stderr."""
        said = read_new_tail(self.ranks[r].stack_path + ".stderr", self._stack_offsets)
        mismatch = collective_mismatch(said)
        if mismatch:
            return (f"collective mismatch: rank {r} {self._death_of(r)} during {what}, in a collective the ranks "
                    f"did not call alike (different collectives, order or tensor sizes); the backend said: {mismatch}")
        tail = "\n".join(said.splitlines()[-STDERR_LINES:])
        return (f"rank {r} {self._death_of(r)} during {what}; a rank must never exit mid-example, whatever its "
                "exit code" + (f"; the last lines it wrote to stderr:\n{tail}" if tail else ""))

    def _accept(self, r: int, reply: Any, waiting: ReplyWait) -> None:
        wrong = waiting.out_of_turn(r, reply)
        if wrong:
            self._fail(wrong, [r])
        waiting.accept(r, reply)

    def _still_working(self, waiting: ReplyWait, window_s: float = SAMPLE_S) -> bool:
        """Whether a rank still left after another finished or raised is working (``cpu_progress``): starved
        on a loaded machine, or on its way to its own reply, rather than asleep in a collective the other rank
        skipped. Never under NCCL, where a waiting rank spins."""
        if backends.selected() == "nccl":
            return False
        return still_working([self.ranks[r].process.pid for r in waiting.pending if self.ranks[r].process.pid],
                             window_s)

    def _fail(self, reason: str, culprits: list[int]) -> None:
        stacks = self.dump_stacks()
        self.close(graceful=False)
        raise GroupFailure(f"{reason}\n{stacks}")

    def _mark_stacks(self) -> None:
        """Remember where each rank's stack files end, so a dump shows only this request's stacks."""
        self._stack_offsets = stack_file_ends([rank.stack_path for rank in self.ranks])

    def _read_new(self, path: str) -> str:
        return read_new_stacks(path, self._stack_offsets)

    def dump_stacks(self) -> str:
        """Every rank's Python stack now (faulthandler on SIGUSR1), or, for a rank that does not
        answer SIGUSR1, the one its faulthandler watchdog wrote just before the timeout."""
        live = []
        for r, rank in enumerate(self.ranks):
            if rank.process.is_alive():
                live.append(r)
                try:
                    os.kill(rank.process.pid, signal.SIGUSR1)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # until every live rank has written something
            time.sleep(0.05)
            if all(self._read_new(self.ranks[r].stack_path) for r in live):
                time.sleep(0.05)  # let the last writes finish
                break
        out = {}
        for r, rank in enumerate(self.ranks):
            if r not in live:
                out[r] = f": {self._death_of(r)}"
                continue
            text = self._read_new(rank.stack_path)
            if not text:
                text = self._read_new(rank.stack_path + ".watchdog")
                text = (f"(no answer to SIGUSR1; its watchdog's dump from just before the timeout:)\n{text}"
                        if text else "(no stack written: the rank ignores SIGUSR1 or is stuck outside Python)")
            out[r] = text
        return stacks.folded(out)

    def _memory_breach(self, r: int) -> Optional[str]:
        """Why the memory watch killed rank ``r`` (``None``: it did not)."""
        return self.memory_watch.breach(r) if self.memory_watch is not None else None

    def _death_of(self, r: int) -> str:
        """How rank ``r`` ended: killed for its memory (by the watch), or its exit code or signal."""
        return self._memory_breach(r) or _death(self.ranks[r].process.exitcode)

    @property
    def healthy(self) -> bool:
        return bool(self.ranks) and all(r.process.is_alive() for r in self.ranks)

    def close(self, graceful: bool = True) -> None:
        """Kill every rank, everything it forked (even into a new session) and its process group,
        while the workers are still alive to hold their descendants in the tree; wait (bounded)
        until the workers are gone. Workers keep no state worth a graceful stop (``graceful`` is
        accepted for compatibility): a worker that exited first would orphan its children."""
        if self.memory_watch is not None:
            self.memory_watch.stop()
        pids = [rank.process.pid for rank in self.ranks if rank.process.pid]
        proctree.kill_tree([p for p in pids if proctree.alive(p)])
        for pid in pids:
            _killpg_if_leader(pid)
        for rank in self.ranks:
            rank.process.join(5.0)
            for c in (rank.conn, rank.lifeline):
                try:
                    c.close()
                except OSError:
                    pass
        self.ranks = []
        self.store = None
        for fd in self._held_fds:
            os.close(fd)
        self._held_fds = []
        if self.tmpdir:
            stale_locks.walled_roots -= {r for r in stale_locks.walled_roots if r.startswith(os.path.join(self.tmpdir, ""))}
            for entry in (os.listdir(self.tmpdir) if os.path.isdir(self.tmpdir) else ()):
                path = os.path.join(self.tmpdir, entry)  # a folder a walled rank locked (mode 0): open again
                if os.path.isdir(path) and not os.path.islink(path):
                    os.chmod(path, 0o700)
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""
        _live_groups.discard(self)

    def __hash__(self) -> int:
        return id(self)


def stack_file_ends(stack_paths: list[str]) -> dict[str, int]:
    """Where each rank's stack files (``path``, its watchdog's ``path.watchdog``, its captured
    ``path.stderr``) end now, so a later dump shows only what was written since (:func:`read_new_stacks`)."""
    ends = {}
    for stack_path in stack_paths:
        for path in (stack_path, stack_path + ".watchdog", stack_path + ".stderr"):
            try:
                ends[path] = os.path.getsize(path)
            except OSError:
                ends[path] = 0
    return ends


def read_new_stacks(path: str, ends: dict[str, int]) -> str:
    """What ``path`` holds past its end in ``ends`` (``""`` when nothing, or it cannot be read)."""
    try:
        with open(path) as fh:
            fh.seek(ends.get(path, 0))
            return fh.read().strip()
    except OSError:
        return ""


STDERR_LINES = 8  # the last lines of a dead rank's stderr that its report shows
_MISMATCH = re.compile(r"[^\n]*(collective mismatch|doesn't match expected size|Mismatch between collectives)[^\n]*",
                       re.IGNORECASE)


def read_new_tail(path: str, ends: dict[str, int], limit: int = 16384) -> str:
    """The last ``limit`` bytes of what ``path`` holds past its end in ``ends`` (``""``: none, or unreadable)."""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(ends.get(path, 0), end - limit))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""


def collective_mismatch(stderr: str) -> Optional[str]:
    """The backend's own line saying the ranks' collectives did not match (Gloo: "Received data size
    doesn't match expected size. Is there a distributed collective mismatch in your code?"), or ``None``."""
    m = _MISMATCH.search(stderr)
    if m is None:
        return None
    line = m.group(0).strip()
    return line.split("] ", 1)[-1] if line.startswith("what():") or "[enforce fail" in line else line


def parse_size(text: str) -> Optional[int]:
    """``"3G"``, ``"2500M"``, ``"1048576"`` (bytes) → bytes; ``"0"``/``"none"`` → ``None`` (no limit)."""
    t = str(text).strip().lower()
    if t in ("0", "none", "off", ""):
        return None
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in "kmg" else t) * scale
    except ValueError:
        raise ValueError(f"{text!r} is not a size like 3G, 2500M or 0") from None
    if value < 256 * 1024**2:
        raise ValueError(f"{text!r} is below 256M; torch alone needs more")
    return int(value)


def _death(code: Optional[int]) -> str:
    if code is None:
        return "is gone"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited (exit code {code})"


def _killpg_if_leader(pid: int) -> None:
    """SIGKILL the process group a worker leads (it made one at start-up), if it still exists."""
    try:
        if os.getpgid(pid) != pid:
            return
    except ProcessLookupError:
        pass  # the leader is gone; its group may still have members
    if pid == os.getpgrp():
        return  # never our own group
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_live_groups: set = set()


@atexit.register
def _close_all() -> None:
    for group in list(_live_groups):
        group.close()


class GroupPool:
    """One live group per world size; a broken group is replaced on its next use.

    :meth:`start_in_background` starts the groups a run will need side by side, each in a thread of
    its own, while this process does other work (pytest collecting the tests); :meth:`get` takes a
    group that is still starting as soon as it is up."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, memory_limit: Optional[int] = DEFAULT_MEMORY_LIMIT):
        # The verdict's tensors are small, and its cores belong to the workers: a second intra-op
        # thread here spin-waits after every op, taking a core from the ranks (measured: the float64
        # ground truth of one example 0.04 ms on one thread, 3-4.6 ms on two while groups ran).
        torch.set_num_threads(1)
        self.timeout_s = timeout_s
        self.memory_limit = memory_limit
        self.groups: dict[int, ProcessGroup] = {}
        self.starts = 0
        self.walls = False  # the ranks of its groups walled apart (tpconform.transport.rank_walls)
        self._starting: dict[int, tuple[Future, float]] = {}  # world size -> (its start, its bound in s)

    def get(self, world_size: int) -> ProcessGroup:
        started = self._starting.pop(world_size, None)
        if started is not None:
            self._take_started(world_size, *started)
        group = self.groups.get(world_size)
        if group is None or not group.healthy:
            if group is not None:
                group.close(graceful=False)
            group = ProcessGroup.start(world_size, self.timeout_s, self.memory_limit, walls=self.walls)
            self.starts += 1
            self.groups[world_size] = group
        return group

    def start_in_background(self, world_sizes: Sequence[int],
                            prepare: Optional[Callable[[ProcessGroup], None]] = None,
                            prepare_timeout_s: float = 0.0) -> None:
        """Start the groups of ``world_sizes`` that are not up yet, each in a daemon thread of its own,
        and return at once; ``prepare(group)`` runs in that thread once its group is up (the runner
        loads the impl on every rank). Every wait in a thread is bounded (the start's, and
        ``prepare``'s own, within ``prepare_timeout_s``), and so is :meth:`get`'s wait for it. A start
        or a ``prepare`` that fails leaves no group: :meth:`get` starts one as if this was never called,
        so the failure is met (and reported) where it would have been without it."""
        for ws in world_sizes:
            if ws in self._starting or (ws in self.groups and self.groups[ws].healthy):
                continue
            future: Future = Future()
            threading.Thread(target=self._start_into, args=(future, ws, prepare),
                             name=f"tpconform-start-ws{ws}", daemon=True).start()
            self._starting[ws] = (future, FORKSERVER_BOOT_S + self.timeout_s + START_SLACK_S + prepare_timeout_s)

    def _start_into(self, future: Future, world_size: int, prepare: Optional[Callable[[ProcessGroup], None]]) -> None:
        group = None
        try:
            group = ProcessGroup.start(world_size, self.timeout_s, self.memory_limit, walls=self.walls)
            if prepare is not None:
                prepare(group)
        except BaseException as exc:  # noqa: BLE001 - handed to get(), which starts the group again
            if group is not None:
                group.close(graceful=False)
            future.set_exception(exc)
        else:
            future.set_result(group)

    def _take_started(self, world_size: int, future: Future, bound_s: float) -> None:
        """Wait (bounded) for a background start; keep its group when it came up and was prepared."""
        try:
            group = future.result(timeout=bound_s)
        except FutureTimeout:  # cannot happen while every wait inside is bounded; never leave its group behind
            future.add_done_callback(_close_when_started)
            raise GroupFailure(f"starting the group of world size {world_size} in the background took over "
                               f"{bound_s:.0f} s") from None
        except Exception:
            return  # started again by get(), where its failure is reported as without a background start
        if world_size in self.groups and self.groups[world_size] is not group:
            self.groups[world_size].close(graceful=False)
        self.groups[world_size] = group
        self.starts += 1

    def close(self) -> None:
        starting, self._starting = self._starting, {}
        for future, bound_s in starting.values():
            future.add_done_callback(_close_when_started)  # closed now if it is up, else as soon as it is
        for group in self.groups.values():
            group.close()
        self.groups.clear()


START_SLACK_S = 40.0  # a group's start waits timeout_s + 30 s for its ranks (ProcessGroup.start), and a little more
# ... after the forkserver is up: the first start waits for its boot (torch's import, ~3 s idle, minutes on a loaded
# 2-core machine; multiprocessing's own wait, unbounded on the synchronous path)
FORKSERVER_BOOT_S = 600.0


def _close_when_started(future: Future) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close(graceful=False)
