"""The forkserver every worker is started from (never ``fork``: a forked child can inherit a lock
held by the store's thread).

It preloads torch, its one-time lazy set-up and the worker loop
(:mod:`tpconform.transport.forkserver_init`): about 3 s of CPU, paid once per verdict process.
:func:`start_early` starts it before the calling process imports torch itself, so the two imports
run side by side; this module imports nothing heavy, so calling it first is cheap. The grading verdict
process, which imports torch anyway, uses :func:`start_forked` instead: the forkserver is a fork of it,
made while it has one thread, so torch is imported once per sandbox, not twice.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing as mp
import os
import socket
import sys
import threading
from multiprocessing import connection, forkserver, resource_tracker, util
from typing import Any

_connection: Any = connection  # arbitrary_address: not in the type stubs

PRELOAD = ["tpconform.transport.forkserver_init", "tpconform.transport.worker",
           "tpconform.families.linear.worker", "tpconform.impls.reference"]

_ctx = None
_main_lock = threading.RLock()  # groups start in threads of their own (GroupPool.start_in_background)


def context():
    """The ``forkserver`` start context, with :data:`PRELOAD` set."""
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(PRELOAD)
    return _ctx


@contextlib.contextmanager
def main_module_hidden():
    """Start workers without re-importing the parent's ``__main__`` (a user script, stdin, …); one
    thread at a time, so threads starting groups side by side restore what they saved in turn."""
    with _main_lock:
        main = sys.modules["__main__"]
        saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def start_early() -> None:
    """Start the forkserver now, without waiting for it: its preloading goes on while this process
    imports what it needs. The first worker started later waits for it as before. Whatever the
    forkserver must inherit (resource limits, environment) has to be set before this call."""
    context()
    with main_module_hidden():
        forkserver.ensure_running()


def start_forked(keep_fds: tuple[int, ...] = ()) -> bool:
    """Start the forkserver as a fork of this process (which has imported torch), not as a fresh
    interpreter that imports torch again: one torch import less per process tree (about a second of
    CPU on two cores; the verdict process, which needs torch itself, calls this). Only while this
    process has one thread (a fork copies no other thread, and a lock one held stays held) and on a
    Python whose forkserver needs no authentication key; otherwise, and for a forkserver already
    running, it is :func:`start_early`. Returns whether it forked.

    The child keeps none of this process's file descriptors but the standard ones, the forkserver's
    listener and its "alive" pipe (``keep_fds`` too; the verdict's result pipe is never among them),
    is dumpable again (its workers' ``/proc`` entries stay readable by the memory watch), then runs
    the standard library's forkserver loop: :data:`PRELOAD` is imported there, as when spawned."""
    server: Any = forkserver._forkserver  # the stdlib's private state, as ensure_running sets it
    if server._forkserver_pid is not None or hasattr(server, "_forkserver_authkey") or _threads() != 1:
        start_early()
        return False
    context()
    with server._lock:
        resource_tracker.ensure_running()  # as the stdlib does: the tracker is this process's, not the fork's
        with socket.socket(socket.AF_UNIX) as listener:
            address = _connection.arbitrary_address("AF_UNIX")
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the forkserver
                _serve_forked(listener.fileno(), alive_r, keep_fds)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return True


def _threads() -> int:
    """This process's threads, native ones included (``0``: unknown, no ``/proc``)."""
    try:
        return max(threading.active_count(), len(os.listdir("/proc/self/task")))
    except OSError:
        return 0


def _serve_forked(listener_fd: int, alive_r: int, keep_fds: tuple[int, ...]) -> None:
    """The forked child of :func:`start_forked`: the forkserver loop, then exit (never returns)."""
    code = 0
    try:
        keep = sorted({0, 1, 2, listener_fd, alive_r, *keep_fds})
        low = 0
        for fd in keep:  # every descriptor but these: the verdict's result pipe above all
            if low < fd:  # never an empty range: closerange(0, 0) closes every descriptor (close_range(0, ~0))
                os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        tracker: Any = resource_tracker._resource_tracker
        tracker._fd = None  # the tracker's pipe stays the parent's (closed above); each worker gets its own
        tracker._pid = None
        try:
            ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE = 4: as a fresh process is
        except (OSError, AttributeError):
            pass
        forkserver.main(listener_fd, alive_r, PRELOAD)
    except SystemExit:
        pass  # the verdict is gone: the forkserver's normal end
    except BaseException:  # noqa: BLE001 - told, then the same exit as a spawned forkserver that failed
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # what a spawned forkserver runs at exit (its socket folder's removal)
        finally:
            os._exit(code)
