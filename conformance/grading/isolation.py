"""Run one submission's verdict process in isolation, and keep the suite it runs out of its reach.

Each submission is graded by ``python -P -m tpconform.grading.verdict`` started here:

- inside a **bubblewrap sandbox** (:mod:`tpconform.grading.bwrap`) unless the run was started with
  ``--unsandboxed``: its own user, PID, mount, IPC and network namespaces, a read-only view of the
  Python environment, the suite snapshot and its own copy, a private ``/tmp``; nothing else of the host;
- from a **read-only snapshot of the suite** (``conformance``, ``impls``, ``strategies``, byte-compiled,
  files 0444 / folders 0555), written from the bytes read once when the run started; its digest is
  checked after every submission; a submission that changed it is graded as a cheat and the snapshot
  is rebuilt from those bytes (never from the live checkout);
- with a **copy of the submission**: only its regular files, size-capped (``Submission.files``), in a
  private read-only folder that is also its working directory; ``-P`` keeps that folder off the
  verdict's ``sys.path``;
- in a **clean environment** (``PATH``, ``PYTHONPATH`` = the snapshot, nothing inherited);
- in **its own session / process group**; its whole process tree is killed as soon as its records
  end (after its ``done`` record, or when it dies) or when it outlives its wall-clock limit (in the
  sandbox, the PID namespace goes with it);
- under **resource limits** (CPU seconds, file size, no core dumps), set by the verdict process on
  itself before any candidate code starts, and inherited by its workers;
- under **one memory bound for the whole sandbox** (``Limits.sandbox_memory_mb``), measured here,
  outside it (:class:`tpconform.transport.memory_watch.SandboxWatch`): every process in it, the verdict
  and any process a worker detached included, with the files in its ``/tmp`` and ``/dev/shm``; over
  the bound, the whole tree is killed and the submission scores 0 with the reason;
- results come back over a **pipe** that only the verdict process holds, as JSON lines that
  :mod:`tpconform.grading.records` checks against a schema and cuts to a bounded size.

See docs/GRADING.md for what is enforced and what is not.
"""

from __future__ import annotations

import compileall
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tpconform.grading.limits import Limits  # noqa: F401 - Limits: imported from here too
from tpconform.grading.submissions import Submission
from tpconform.transport import proctree

EXIT_GRACE_S = 2.0  # how long a verdict process that ended its records without "done" has to exit
PACKAGE = "tpconform"  # the suite's one import package: the snapshot holds it, laid out as installed


def suite_folders() -> dict[str, str]:
    """Where the running suite's code lives: its path in the installed layout -> the folder on disk.

    Installed from a wheel, ``tpconform/impls`` sits inside ``tpconform/``; in a checkout it is the
    repository's ``impls/`` (``pyproject.toml``'s ``package-dir``). The property tests are not part of it."""
    import tpconform.impls
    import tpconform.strategies

    return {PACKAGE: os.path.dirname(os.path.abspath(tpconform.__file__)),
            f"{PACKAGE}/impls": os.path.dirname(os.path.abspath(tpconform.impls.__file__)),
            f"{PACKAGE}/strategies": os.path.dirname(os.path.abspath(tpconform.strategies.__file__))}


def _walk(folders: dict[str, str]):
    """(path in the installed layout, path on disk) of every source file in ``folders``, sorted, no byte code."""
    seen: dict[str, str] = {}
    for rel_top, top in folders.items():
        for d, dirs, names in os.walk(top):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            rel_dir = os.path.join(rel_top, os.path.relpath(d, top)) if d != top else rel_top
            if os.path.normpath(rel_dir) == f"{PACKAGE}/properties":
                dirs[:] = []  # a wheel's property tests: the verdict never imports them
                continue
            for n in names:
                if not n.endswith(".pyc"):
                    seen.setdefault(os.path.normpath(os.path.join(rel_dir, n)), os.path.join(d, n))
    return sorted(seen.items())


def tree_digest(root: str) -> tuple[str, dict[str, str]]:
    """The digest of the suite's files in a snapshot folder ``root``, and each file's own digest."""
    files = {rel: hashlib.sha256(_read(path)).hexdigest() for rel, path in _walk({PACKAGE: os.path.join(root, PACKAGE)})}
    return _combine(files), files


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _combine(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k, v in sorted(files.items()):
        h.update(f"{k}\0{v}\n".encode())
    return h.hexdigest()


def source_digest() -> str:
    """The digest of the suite's sources (no byte code): the suite version a report records."""
    files = {rel: hashlib.sha256(data).hexdigest() for rel, data in read_suite().items()}
    return _combine({k: v for k, v in files.items() if k.endswith((".py", ".toml", ".j2"))})


class SuiteSnapshot:
    """A read-only copy of the suite that the verdict processes import, checked after each use.

    The suite's files are read **once**, when the run starts, and kept in memory with their digest;
    a snapshot that was changed is rebuilt from those bytes, never from the live checkout (which a
    submission graded without a sandbox could have edited in the meantime)."""

    def __init__(self, pristine: "dict[str, bytes] | None" = None) -> None:
        self.pristine = pristine if pristine is not None else read_suite()
        self.dir = tempfile.mkdtemp(prefix="tpconform-suite-")
        self._build()

    def _build(self) -> None:
        for rel, data in self.pristine.items():
            path = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
        compileall.compile_dir(self.dir, quiet=1)
        for d, _, names in os.walk(self.dir):
            for n in names:
                os.chmod(os.path.join(d, n), 0o444)
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


def read_suite() -> dict[str, bytes]:
    """The running suite's source files (no byte code), by their path in the installed layout, read once."""
    return {rel: _read(path) for rel, path in _walk(suite_folders())}


def _copy_submission(files: dict[str, bytes], sub: Submission, root: str, shown_root: str) -> str:
    """Write the submission's ``files`` (already read and checked) under ``root``, read-only; return
    the impl spec as the verdict sees it (paths under ``shown_root``, where ``root`` appears)."""
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
        os.chmod(path, 0o444)
    if sub.kind == "file":
        return os.path.join(shown_root, os.path.basename(sub.path))
    spec = sub.impl
    return os.path.join(shown_root, spec) if spec.endswith(".py") else spec


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
                 dtypes: str, timeout_s: float, limits: Limits, sandboxed: bool = True,
                 contract_json: str | None = None) -> dict:
    """Grade ``sub`` in its own process tree (in a bwrap sandbox unless ``sandboxed`` is false); the
    cells it finished, and how it ended."""
    from tpconform.grading import bwrap, logs, records, suspicious
    from tpconform.grading.submissions import Rejected

    started = time.monotonic()
    try:
        files = sub.files()
    except Rejected as exc:
        return {"problem": str(exc)}
    private = tempfile.mkdtemp(prefix="tpconform-sub-")
    try:
        subdir = os.path.join(private, "submission")
        os.makedirs(subdir)
        home = os.path.join(private, "home")
        os.makedirs(home)
        inside = bwrap.SUBMISSION_MOUNT if sandboxed else subdir
        spec = _copy_submission(files, sub, subdir, inside)
        for d, _, _ in os.walk(subdir):
            os.chmod(d, 0o555)
        suite = bwrap.SUITE_MOUNT if sandboxed else snapshot.dir
        env = {"PATH": os.defpath, "PYTHONPATH": suite, "PYTHONNOUSERSITE": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "HOME": "/tmp" if sandboxed else home,
               "TMPDIR": "/tmp" if sandboxed else home, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
        read_fd, write_fd = os.pipe()
        # -P: neither the working directory (the submission) nor the script's folder goes on sys.path,
        # so a submission file named like a module the verdict imports is never imported by it
        cmd = [sys.executable, "-P", "-m", "tpconform.grading.verdict", f"--impl={spec}", f"--seed={seed}",
               f"--examples={examples}", f"--world-sizes={world_sizes}", f"--dtypes={dtypes}",
               f"--timeout={timeout_s}", f"--result-fd={write_fd}", f"--shown-as={sub.impl or sub.path}",
               f"--limit-seconds={limits.seconds}", f"--limit-memory-mb={limits.memory_mb}",
               f"--limit-file-mb={limits.file_mb}"]
        if contract_json:
            cmd.append(f"--contract-json={contract_json}")
        if sandboxed:  # its own network namespace: the loopback's byte count is the submission's alone
            cmd.append("--private-network")
        log_path = os.path.join(private, "log.txt")
        with open(log_path, "wb") as log:
            if sandboxed:
                argv = bwrap.command(cmd, suite_dir=snapshot.dir, submission_dir=subdir, cwd=inside, env=env)
                proc = bwrap.popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
                                   start_new_session=True)
            else:
                proc = subprocess.Popen(cmd, cwd=subdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        pass_fds=(write_fd,), start_new_session=True)
        _live.add(proc.pid)
        os.close(write_fd)
        watch = None
        if limits.sandbox_memory_mb:
            from tpconform.transport.memory_watch import SandboxWatch

            watch = SandboxWatch(proc.pid, limits.sandbox_memory_mb * 2**20,
                                 tmpfs=("/tmp", "/dev/shm") if sandboxed else ())
        got: list = []
        stats: dict = {}
        reader = threading.Thread(target=records.read_stream, args=(read_fd, got, stats), daemon=True)
        reader.start()
        status = "done"
        try:
            # the records end when the verdict closes its end of the pipe (after its "done" record)
            # or dies; its own tear-down after that is not waited for: the group is killed below
            reader.join(timeout=limits.seconds)
            if reader.is_alive():
                status = "timeout"
            elif not any(kind == "done" for kind, _ in got):
                proc.wait(timeout=EXIT_GRACE_S)  # it died or closed the pipe early: keep its exit code
        except subprocess.TimeoutExpired:
            pass
        finally:
            # the whole tree, frozen from the root down, then killed: the verdict, its forkserver and
            # its workers (each in a process group of its own, so killpg alone would miss them when
            # there is no sandbox's PID namespace to end), then anything left in its process group
            if watch is not None:
                watch.stop()
            proctree.kill_tree([proc.pid])
            _kill_group(proc.pid)
            proc.wait()
            _live.discard(proc.pid)
        reader.join(5.0)
        if _cancelled.is_set():
            raise Cancelled(sub.name)
        result = _collect(got, status, proc.returncode)
        if stats.get("overflow"):
            result["status"] = "crashed"
            result["exit_code"] = proc.returncode
        result["dropped_records"] = stats.get("dropped", 0) + (1 if stats.get("overflow") else 0)
        if watch is not None:
            result["peak_memory_mb"] = round(watch.peak / 2**20)
            if watch.breach:
                result["over_budget"] = watch.breach
                result["status"] = "crashed"
                result["exit_code"] = proc.returncode
        result["seconds"] = round(time.monotonic() - started, 2)
        refused = records.refused_line(stats)  # a record no definition fits: said in its log, never silent
        result["log_tail"] = records.cut((f"{refused}\n" if refused else "") + logs.tail(log_path), 4000)
        result["sandbox"] = bwrap.version() if sandboxed else "none (--unsandboxed)"
        result["suspicious"] = suspicious.scan(files)
        return result
    finally:
        for d, _, _ in os.walk(private):
            try:
                os.chmod(d, 0o755)
            except OSError:
                pass
        shutil.rmtree(private, ignore_errors=True)


def _collect(got: list, status: str, returncode: int) -> dict:
    """The result from the verdict's checked records (see :mod:`tpconform.grading.records`): the
    first ``describe``/``unusable``, the first cell of each property × variant × scope and the first
    failure group of each id count."""
    from tpconform.grading import records

    result: dict = {"status": status, "describe": None, "unusable": None, "cells": [], "failures": []}
    seen: set = set()
    finished = False
    for kind, value in got:
        if kind == "describe" and result["describe"] is None:
            result["describe"] = value
        elif kind in ("unusable", "narrowed") and result.get(kind) is None:
            result[kind] = value
        elif kind == "cell" and (value["property"], value["variant"], value.get("scope")) not in seen:
            seen.add((value["property"], value["variant"], value.get("scope")))
            result["cells"].append(value)
        elif kind == "failure" and len(result["failures"]) < records.MAX_FAILURES and value["id"] not in seen:
            seen.add(value["id"])
            result["failures"].append(value)
        elif kind == "done":
            finished = True
    if status == "done" and not finished:
        result["status"] = "crashed"
        result["exit_code"] = returncode
    return result

