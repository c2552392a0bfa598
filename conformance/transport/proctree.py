"""Find and kill a process tree (Linux ``/proc``), so no worker descendant outlives its group.

A candidate may fork children, put them in a new session (``os.setsid``) or ignore SIGTERM.
:func:`kill_tree` first freezes the whole tree with SIGSTOP (which cannot be caught or ignored)
until no new descendant appears, then SIGKILLs every member, so nothing can fork its way out
between the scan and the kill. Workers make themselves child subreapers
(``tpconform.transport.sandbox``), so a daemonizing grandchild stays in the tree while its worker lives.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Optional


def stat_fields(path: str) -> Optional[list[bytes]]:
    """The fields of a ``/proc/<pid>/stat`` (or ``.../task/<tid>/stat``) after the command name, from the state
    on (``None``: unreadable, or gone)."""
    try:
        with open(path, "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[-1].split()  # the comm field may hold spaces and parens


def _parents() -> dict[int, int]:
    """``{pid: ppid}`` for every live, non-zombie process."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(f"/proc/{name}/stat")
        if fields is None or len(fields) < 2 or fields[0] == b"Z":
            continue
        out[int(name)] = int(fields[1])
    return out


def descendants(roots: Iterable[int]) -> set[int]:
    """Every live process below ``roots`` (not the roots themselves)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(roots: Iterable[int], *, include_roots: bool = True, rounds: int = 20) -> set[int]:
    """Freeze ``roots`` and all their descendants, then SIGKILL them; returns the pids killed."""
    roots = [int(r) for r in roots]
    me = os.getpid()
    frozen: set[int] = set()
    if include_roots:
        for pid in roots:
            if pid != me:
                _signal(pid, signal.SIGSTOP)
                frozen.add(pid)
    for _ in range(rounds):
        new = descendants(roots) - frozen - {me}
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        frozen |= new
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    return frozen


def alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
