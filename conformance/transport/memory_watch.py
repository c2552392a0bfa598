"""A bound on the memory a worker really uses, enforced from outside it.

Each worker's process tree (the worker and everything it forked) is measured every
:data:`INTERVAL_S` by a thread in the process that started it (the verdict, or torchrun's relay), never
by the candidate's own process, so a candidate cannot disarm it. What counts is resident memory the
tree owns: ``RssAnon`` (heap, tensors) plus ``RssShmem`` (shared memory and tmpfs pages it maps), from
``/proc/PID/status``. The shared libraries a process maps are left out: the CUDA build of torch maps
about 3 GB of address space before any work (and a GPU far more), which an address-space limit
(``RLIMIT_AS``) counted and a correct layer then failed for; none of it is resident memory the layer
asked for.

A library's first-use build is not the layer's memory: a compiler process (:data:`BUILD_TOOLS`)
working in a torch-extensions build folder (``tpconform.transport.stale_locks.extension_roots``), where
``torch.utils.cpp_extension`` runs ninja, is left out of the count (its children are still
walked). DeepSpeed's comm extension compiles in the first worker that initialises it: that tree
peaked at 3.11 GiB here (the worker plus ``cc1plus`` on torch's headers), over the default 3 GiB;
the watch killed the compile, which left its build lock behind and never finished.

A tree over the limit is frozen and killed at once (``tpconform.transport.proctree``); the group then reports
the rank as killed, with :meth:`MemoryWatch.breach` saying how much it held. Between two readings a
process can grow by what it touches in :data:`INTERVAL_S` (a few hundred MB at most on this kind of
machine), so set the limit that far below what the machine can give.

A group waiting for its next message (:meth:`MemoryWatch.busy` not set: its ranks sit in the worker loop,
and a run holds one group per world size, all but one of them idle) is read every :data:`IDLE_INTERVAL_S`
instead: a reading costs ~170 us of this process's CPU per rank, and at :data:`INTERVAL_S` the idle groups of
a default run (36 ranks) took 14 % of a core from the verdict while nothing ran. What a candidate's
background thread touches between examples is still seen, within :data:`IDLE_INTERVAL_S`. The grader's
:class:`SandboxWatch` (a submission's whole sandbox) always reads at :data:`INTERVAL_S`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

from tpconform.transport import proctree
from tpconform.transport.stale_locks import extension_roots

INTERVAL_S = 0.05
IDLE_INTERVAL_S = 0.5  # a group between requests (MemoryWatch.busy)
_FIELDS = (b"RssAnon:", b"RssShmem:")


def _status_bytes(path: str) -> Optional[int]:
    """``RssAnon`` + ``RssShmem`` from one ``status`` file (``None``: it has neither, or is gone)."""
    total, found = 0, False
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.startswith(_FIELDS):
                    total += int(line.split()[1]) * 1024  # kB
                    found = True
    except (OSError, ValueError, IndexError):
        return None
    return total if found else None


def resident_bytes(pid: int) -> int:
    """The anonymous and shared-memory resident bytes of one process (0 when it is gone).

    A process whose first thread has exited (``pthread_exit`` in the main thread) shows no memory in
    ``/proc/PID/status`` while its other threads hold all of it: then a live thread's status is read."""
    own = _status_bytes(f"/proc/{pid}/status")
    if own is not None:
        return own
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        got = _status_bytes(f"/proc/{pid}/task/{tid}/status")
        if got is not None:
            return got
    return 0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, from ``/proc/PID/task/*/children`` (cheap: no scan of /proc)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


# what torch.utils.cpp_extension runs to build an extension (ninja, the compiler driver and its passes)
BUILD_TOOLS = frozenset({"ninja", "c++", "g++", "gcc", "cc", "cc1plus", "cc1", "as", "ld", "collect2", "clang",
                         "clang++", "nvcc"})


def is_extension_build(pid: int) -> bool:
    """``pid`` is a build tool working in a torch-extensions build folder."""
    try:
        with open(f"/proc/{pid}/comm") as fh:
            if fh.read().strip() not in BUILD_TOOLS:
                return False
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return any(cwd.startswith(os.path.join(root, "")) for root in extension_roots())


def tree_resident_bytes(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (workers are child subreapers, so a
    daemonized grandchild stays below its worker), less the extension builds among them."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        if not is_extension_build(p):
            total += resident_bytes(p)
        todo.extend(_children(p))
    return total


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


class MemoryWatch:
    """Watches ``{rank: pid}``; kills a rank's whole tree once it holds more than ``limit`` bytes."""

    def __init__(self, pids: dict[int, int], limit: int, interval_s: float = INTERVAL_S,
                 idle_interval_s: float = IDLE_INTERVAL_S):
        self.pids = dict(pids)
        self.limit = int(limit)
        self.interval_s, self.idle_interval_s = interval_s, idle_interval_s
        self.breaches: dict[int, int] = {}  # rank -> resident bytes when it was killed
        self.peak: dict[int, int] = {r: 0 for r in pids}
        self._busy = True  # until told otherwise (a watch whose owner never says is always read at interval_s)
        self._read_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tpconform-memory-watch", daemon=True)
        self._thread.start()

    def busy(self, busy: bool) -> None:
        """Whether the ranks are working (a request in flight): read every ``interval_s`` while they
        are, every ``idle_interval_s`` while they wait for their next message."""
        self._busy = busy

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            if not self._busy and now - self._read_at < self.idle_interval_s:
                continue
            self._read_at = now
            for rank, pid in list(self.pids.items()):
                if rank in self.breaches:
                    continue
                used = tree_resident_bytes(pid)
                self.peak[rank] = max(self.peak[rank], used)
                if used > self.limit:
                    self.breaches[rank] = used
                    proctree.kill_tree([pid])

    def breach(self, rank: int) -> Optional[str]:
        """Why ``rank`` was killed, if it was for memory (``None`` otherwise)."""
        used = self.breaches.get(rank)
        if used is None:
            return None
        return (f"was killed for using {_gib(used)} of resident memory (with its child processes), over the "
                f"limit of {_gib(self.limit)} (--tp-memory-limit)")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _statvfs_used(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _host_devices() -> set[int]:
    devices = set()
    for path in ("/", "/tmp", "/dev/shm"):
        try:
            devices.add(os.stat(path).st_dev)
        except OSError:
            pass
    return devices


def _sandbox_mount_used(path: str, host: set[int]) -> int:
    """The bytes used on the sandbox's own mount at ``path`` (``/proc/PID/root/MOUNT``), or 0 while that
    path is still one of the host's file systems (bwrap has not yet mounted the sandbox's tmpfs or moved
    into its root: the host's disk usage is not the submission's)."""
    try:
        device = os.stat(path).st_dev
    except OSError:
        return 0
    if device in host:
        return 0
    return _statvfs_used(path)


class SandboxWatch:
    """One memory bound for a whole sandbox, enforced from outside it (by the grader).

    Every process of a PID namespace descends from its first process, so the tree below ``root`` (the
    ``bwrap`` process the grader started) holds all of them: the verdict (PID 1 inside), its forkserver,
    every worker, and any process a worker detached (a cleared subreaper flag, a double fork and
    ``setsid`` re-parent it to PID 1, outside every worker's tree). Their resident bytes
    (:func:`resident_bytes`) are summed every ``interval_s`` with the files held in the sandbox's
    ``tmpfs`` mounts (read through ``/proc/PID/root`` of its first process), with no exemption
    (an extension build is counted: inside the sandbox its name and folder are the candidate's to
    choose); over ``limit``, the whole tree is frozen and killed (:func:`proctree.kill_tree`) and
    :attr:`breach` says why."""

    def __init__(self, root: int, limit: int, tmpfs: tuple[str, ...] = (), interval_s: float = INTERVAL_S):
        self.root, self.limit, self.tmpfs, self.interval_s = int(root), int(limit), tmpfs, interval_s
        self.peak = 0
        self.breach: Optional[str] = None
        self._inside: Optional[int] = None  # the sandbox's first process (its /proc/PID/root is the sandbox's)
        self._host = _host_devices()  # the host's own file systems: never the sandbox's tmpfs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tpconform-sandbox-watch", daemon=True)
        self._thread.start()

    def measure(self) -> tuple[int, int]:
        """(resident bytes of every process below ``root``, bytes of files in the sandbox's tmpfs mounts)."""
        procs, todo, seen = 0, [self.root], set()
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            procs += resident_bytes(p)
            todo.extend(_children(p))
        files = 0
        if self.tmpfs:
            if self._inside is None:
                kids = _children(self.root)
                self._inside = kids[0] if kids else None
            if self._inside is not None:
                files = sum(_sandbox_mount_used(f"/proc/{self._inside}/root{m}", self._host) for m in self.tmpfs)
        return procs, files

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            procs, files = self.measure()
            self.peak = max(self.peak, procs + files)
            if procs + files > self.limit:
                self.breach = (f"killed: its sandbox held {_mib(procs + files)} of memory, over the {_mib(self.limit)} "
                               "one submission may hold (--sandbox-memory-mb), every process in it counted, the "
                               f"verdict's and any it left behind ({_mib(procs)} resident"
                               + (f", {_mib(files)} of files in {' and '.join(self.tmpfs)})" if self.tmpfs else ")"))
                proctree.kill_tree([self.root])
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(2.0)
