"""Run one submission's verdict process in isolation, and keep the suite it runs out of its reach.

Each submission is graded by ``python -m conformance.grading.one`` started here:

- from a **read-only snapshot of the suite** (``conformance``, ``impls``, ``strategies``, byte-compiled,
  files 0444 / folders 0555), taken once per run; its digest is checked after every submission, and
  a submission that changed it is graded as a cheat and the snapshot is rebuilt;
- with a **copy of the submission** in a private temp dir that is also its working directory,
  ``HOME`` and ``TMPDIR`` (so it cannot reach the other submissions through relative paths);
- in a **clean environment** (``PATH``, ``PYTHONPATH`` = the snapshot, nothing inherited);
- in **its own session / process group**, killed as a whole when it outlives its wall-clock limit
  and swept after it exits;
- under **resource limits** (address space, CPU seconds, file size, no core dumps), set by the
  verdict process on itself before any candidate code starts, and inherited by its workers;
- results come back over a **pipe** that only the verdict process holds (the workers, where the
  candidate runs, do not inherit it), never through files the candidate could write.

Not enforced (needs a separate user or a container): the candidate runs as the grader's user, so a
deliberately malicious one can still read or write whatever that user can. See docs/GRADING.md.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from conformance.grading.submissions import Submission

SUITE_PACKAGES = ("conformance", "impls", "strategies")


def suite_root() -> str:
    import conformance

    return os.path.dirname(os.path.dirname(os.path.abspath(conformance.__file__)))


def tree_digest(root: str, packages=SUITE_PACKAGES) -> tuple[str, dict[str, str]]:
    """The digest of the suite's files under ``root``, and each file's own digest."""
    files: dict[str, str] = {}
    for pkg in packages:
        for d, dirs, names in os.walk(os.path.join(root, pkg)):
            dirs.sort()
            for n in sorted(names):
                p = os.path.join(d, n)
                with open(p, "rb") as fh:
                    files[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    h = hashlib.sha256()
    for k, v in sorted(files.items()):
        h.update(f"{k}\0{v}\n".encode())
    return h.hexdigest(), files


def source_digest() -> str:
    """The digest of the suite's Python sources (no byte code): the suite version a report records."""
    h = hashlib.sha256()
    _, files = tree_digest(suite_root())
    for k, v in sorted(files.items()):
        if k.endswith((".py", ".toml", ".j2")):
            h.update(f"{k}\0{v}\n".encode())
    return h.hexdigest()


class SuiteSnapshot:
    """A read-only copy of the suite that the verdict processes import, checked after each use."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tpconform-suite-")
        self._build()

    def _build(self) -> None:
        src = suite_root()
        for pkg in SUITE_PACKAGES:
            shutil.copytree(os.path.join(src, pkg), os.path.join(self.dir, pkg),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        compileall.compile_dir(self.dir, quiet=1)
        for d, _, names in os.walk(self.dir):
            for n in names:
                os.chmod(os.path.join(d, n), 0o444)
            if d != self.dir:
                os.chmod(d, 0o555)
        self.digest, self.files = tree_digest(self.dir)

    def changed(self) -> list[str]:
        """Files added, removed or modified since the snapshot was taken."""
        try:
            digest, files = tree_digest(self.dir)
        except OSError as exc:
            return [f"(unreadable: {exc})"]
        if digest == self.digest:
            return []
        return sorted(k for k in set(files) | set(self.files) if files.get(k) != self.files.get(k))

    def rebuild(self) -> None:
        self.remove()
        self.dir = tempfile.mkdtemp(prefix="tpconform-suite-")
        self._build()

    def remove(self) -> None:
        for d, _, _ in os.walk(self.dir):
            try:
                os.chmod(d, 0o755)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class Limits:
    seconds: float = 900.0  # wall clock for the whole submission
    memory_mb: int = 4096  # resident memory per worker, with the processes it starts (conformance.memory_watch)
    file_mb: int = 64  # largest file a process may write

    def apply(self) -> None:
        """Set this process's limits (inherited by every process it starts). Memory is not one of
        them: an address-space limit fails the CUDA build of torch, which maps ~3.1 GB before any
        work; the workers' resident memory is bounded from outside them (``GroupPool(memory_limit)``)."""
        import resource

        def cap(which, value):
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))

        cap(resource.RLIMIT_CPU, int(self.seconds) + 5)
        cap(resource.RLIMIT_FSIZE, self.file_mb * 2**20)
        cap(resource.RLIMIT_CORE, 0)


def _copy_submission(sub: Submission, private: str) -> tuple[str, str]:
    """Copy the submission into ``private``; return (its working directory, the impl spec)."""
    if sub.kind == "file":
        work = os.path.join(private, "submission")
        os.makedirs(work)
        target = os.path.join(work, os.path.basename(sub.path))
        shutil.copy2(sub.path, target)
        return work, target
    work = os.path.join(private, sub.name)
    shutil.copytree(sub.path, work, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    spec = sub.impl
    if spec.endswith(".py"):
        spec = os.path.join(work, spec)
    return work, spec


_live: set[int] = set()  # process groups of the verdict processes now running
_cancelled = threading.Event()


class Cancelled(Exception):
    """The run was interrupted; the submission being graded has no result."""


def kill_all() -> None:
    """Interrupt the run: kill every live submission's process tree (their results are dropped)."""
    _cancelled.set()
    for pgid in list(_live):
        _kill_group(pgid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_isolated(sub: Submission, snapshot: SuiteSnapshot, *, seed: int, examples: int, world_sizes: str,
                 dtypes: str, timeout_s: float, limits: Limits) -> dict:
    """Grade ``sub`` in its own process tree; the cells it finished, and how it ended."""
    private = tempfile.mkdtemp(prefix="tpconform-sub-")
    started = time.monotonic()
    try:
        work, spec = _copy_submission(sub, private)
        home = os.path.join(private, "home")
        os.makedirs(home)
        env = {"PATH": os.defpath, "PYTHONPATH": snapshot.dir, "PYTHONNOUSERSITE": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "HOME": home, "TMPDIR": home,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
        read_fd, write_fd = os.pipe()
        cmd = [sys.executable, "-m", "conformance.grading.one", f"--impl={spec}", f"--seed={seed}",
               f"--examples={examples}", f"--world-sizes={world_sizes}", f"--dtypes={dtypes}",
               f"--timeout={timeout_s}", f"--result-fd={write_fd}", f"--shown-as={sub.impl or sub.path}", f"--limit-seconds={limits.seconds}",
               f"--limit-memory-mb={limits.memory_mb}", f"--limit-file-mb={limits.file_mb}"]
        log_path = os.path.join(private, "log.txt")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    pass_fds=(write_fd,), start_new_session=True)
        _live.add(proc.pid)
        os.close(write_fd)
        records: list[dict] = []
        reader = threading.Thread(target=_read_records, args=(read_fd, records), daemon=True)
        reader.start()
        status = "done"
        try:
            proc.wait(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            _kill_group(proc.pid)  # the whole tree: workers, forkserver, anything it left behind
            proc.wait()
            _live.discard(proc.pid)
        reader.join(5.0)
        if _cancelled.is_set():
            raise Cancelled(sub.name)
        result = _collect(records, status, proc.returncode)
        result["seconds"] = round(time.monotonic() - started, 2)
        result["log_tail"] = _tail(log_path)
        return result
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _read_records(fd: int, records: list) -> None:
    with os.fdopen(fd, "r", errors="replace") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except ValueError:
                pass


def _collect(records: list[dict], status: str, returncode: int) -> dict:
    result: dict = {"status": status, "describe": None, "unusable": None, "cells": []}
    for r in records:
        if "describe" in r:
            result["describe"] = r["describe"]
        elif "unusable" in r:
            result["unusable"] = r["unusable"]
        elif "cell" in r:
            result["cells"].append(r["cell"])
    finished = any(r.get("done") for r in records)
    if status == "done" and not finished:
        result["status"] = "crashed"
        result["exit_code"] = returncode
    return result


def _tail(path: str, size: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(os.path.getsize(path) - size, 0))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
