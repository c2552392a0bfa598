"""Locks that a killed build left behind, removed before an impl's set-up runs.

``torch.utils.cpp_extension`` (which DeepSpeed and other libraries use to compile their extensions on
first use) guards each build with a ``lock`` file in the extension's build folder
(``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions/<python and torch tag>/<name>/``) and waits
for it to disappear, forever. A worker killed while it compiled (a hang, a timeout, Ctrl-C: the
suite kills process trees) leaves the file there, and every later process on the machine then waits
on it: every later run of that library would hang in its set-up.

A lock is stale when no live process works in its folder (a build runs its compiler there: ninja's
working directory is the build folder) and it is older than :data:`MIN_AGE_S` (a build that is
just starting writes its ``build.ninja`` before it starts ninja). Only such locks are removed.
"""

from __future__ import annotations

import glob
import os
import time

MIN_AGE_S = 15.0


# the extension folders of walled ranks (tpconform.transport.rank_walls.extension_folder), each in the
# rank's own folder: registered by the harness while their group lives
walled_roots: set[str] = set()


def extension_roots() -> list[str]:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return [root, *sorted(walled_roots)]
    base = os.path.join(os.path.expanduser("~"), ".cache", "torch_extensions")
    return [base, *sorted(walled_roots)]


def _busy_folders() -> set[str]:
    """Every live process's working directory."""
    busy = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                busy.add(os.readlink(f"/proc/{name}/cwd"))
            except OSError:
                continue
    return busy


def stale_locks(roots: list[str] | None = None, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    locks = []
    for root in roots or extension_roots():
        # <root>/<name>/lock (TORCH_EXTENSIONS_DIR) and <root>/<tag>/<name>/lock (the default cache)
        locks += glob.glob(os.path.join(root, "*", "lock")) + glob.glob(os.path.join(root, "*", "*", "lock"))
    if not locks:
        return []
    busy = _busy_folders()
    stale = []
    for lock in locks:
        folder = os.path.dirname(lock)
        try:
            age = now - os.path.getmtime(lock)
        except OSError:
            continue
        if age >= MIN_AGE_S and not any(b == folder or b.startswith(folder + os.sep) for b in busy):
            stale.append(lock)
    return stale


def remove_stale_extension_locks(roots: list[str] | None = None) -> list[str]:
    """Remove the stale build locks; returns their paths."""
    removed = []
    for lock in stale_locks(roots):
        try:
            os.unlink(lock)
            removed.append(lock)
        except OSError:
            continue
    return removed
