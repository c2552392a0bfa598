"""Process set-up of a worker before it loads candidate code, and its exit when the verdict goes.

- a name (``/proc/PID/comm``): ``tpconform-ws<world size>r<rank>``, to find it in ``ps``;
- its own process group, so the verdict can ``killpg`` it with everything it forked, and a
  terminal's Ctrl-C reaches only the verdict process (SIGINT is ignored: the verdict shuts down);
- a child subreaper, so grandchildren a candidate daemonizes stay below the worker;
- a lifeline: a thread that, when the verdict process's end of a pipe closes (it exited, was
  killed, or closed the group), kills every descendant of the worker and then the worker's group.

Every helper here is bound at import time (before any candidate is loaded), so a candidate that
monkeypatches ``os._exit`` or ``os.kill`` does not disarm the lifeline.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import threading
from multiprocessing import forkserver, resource_tracker

from tpconform.transport import proctree

_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36
_exit = os._exit
_killpg = os.killpg
_kill_tree = proctree.kill_tree

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _prctl(option: int, arg) -> None:
    if _libc is not None:
        _libc.prctl(option, arg, 0, 0, 0)


def set_up(world_size: int, rank: int) -> None:
    """Name, own process group, child subreaper, SIGINT ignored."""
    _prctl(_PR_SET_NAME, f"tpconform-ws{world_size}r{rank}"[:15].encode())
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _drop_inherited_fds()


def _drop_inherited_fds() -> None:
    """Close the verdict's forkserver "alive" pipe and resource-tracker pipe that every forkserver
    child inherits: a candidate's stray child holding them would keep the forkserver (and the
    tracker) running after the verdict process is gone."""
    fs = forkserver._forkserver
    tracker = resource_tracker._resource_tracker
    for owner, attr in ((fs, "_forkserver_alive_fd"), (tracker, "_fd")):
        fd = getattr(owner, attr, None)
        if isinstance(fd, int):
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(owner, attr, None)
    setattr(tracker, "_pid", None)  # noqa: B010  (private, not in the type stubs)


def die(cleanup_paths: tuple[str, ...]) -> None:
    """Remove ``cleanup_paths`` (and their folder, when empty), kill every descendant and this
    worker's process group, exit: what a worker does when the verdict process is gone."""
    _die(cleanup_paths)


def _die(cleanup_paths: tuple[str, ...]) -> None:
    for path in cleanup_paths:
        try:
            os.unlink(path)
            os.rmdir(os.path.dirname(path))  # the last rank out removes the group's folder
        except OSError:
            pass
    try:
        _kill_tree([os.getpid()], include_roots=False)
        if os.getpgrp() == os.getpid():  # never the verdict's group, should setpgid have failed
            _killpg(0, signal.SIGKILL)  # this worker and whatever is left in its group
    finally:
        _exit(3)


def _watch(lifeline, cleanup_paths: tuple[str, ...]) -> None:
    try:
        lifeline.recv_bytes()
    except BaseException:
        pass
    _die(cleanup_paths)


def start_lifeline(lifeline, cleanup_paths: tuple[str, ...] = ()) -> None:
    """Exit (killing every descendant) as soon as the verdict process's end of ``lifeline`` closes."""
    threading.Thread(target=_watch, args=(lifeline, cleanup_paths), daemon=True, name="tpconform-lifeline").start()


def remove_socket_dir_at_exit() -> None:
    """In the forkserver: remove its socket's folder when it exits (its parent may have been killed)."""
    def _remove() -> None:
        addr = getattr(forkserver._forkserver, "_forkserver_address", None)
        if isinstance(addr, str) and os.path.basename(os.path.dirname(addr)).startswith("pymp-"):
            shutil.rmtree(os.path.dirname(addr), ignore_errors=True)

    atexit.register(_remove)

