"""The kernel's own byte count of the loopback interface, read from outside the candidate's processes.

In the grading sandbox (bubblewrap ``--unshare-all``) every submission has its own network namespace
whose only interface is its own ``lo``; the Gloo groups, the verdict's ``TCPStore`` and anything the
candidate opens all use it. The kernel counts every byte that crosses it (``/proc/self/net/dev``, the
namespace of the process that reads it); no process of the namespace can lower that count (it has no
capabilities, and there is no way to reset an interface's counters anyway): a candidate can add bytes,
never remove them. The verdict reads it before and after each example (``tpconform.engine.runner``),
which bounds from above what the ranks sent to each other.

Outside such a namespace (``pytest --impl``, ``tpconform grade --unsandboxed``) the count is shared with
every process of the machine, so it bounds nothing: :func:`private_counter` returns ``None`` there and
the check that reads it is reported as not available.
"""

from __future__ import annotations

from typing import Callable, Optional

NET_DEV = "/proc/self/net/dev"


def interfaces(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/net/dev``'s text: interface -> (bytes transmitted, packets transmitted)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, _, fields = line.partition(":")
        values = fields.split()
        if len(values) >= 10:
            out[name.strip()] = (int(values[8]), int(values[9]))
    return out


def read(path: str = NET_DEV) -> dict[str, tuple[int, int]]:
    with open(path, encoding="ascii") as f:
        return interfaces(f.read())


def loopback_bytes(path: str = NET_DEV) -> int:
    """Bytes the loopback interface of this process's network namespace has carried (each packet on
    ``lo`` is transmitted once and received once: this counts it once, headers included)."""
    return read(path)["lo"][0]


def private_counter(path: str = NET_DEV) -> Optional[Callable[[], int]]:
    """:func:`loopback_bytes`, when this process's network namespace has ``lo`` as its only interface
    (the grading sandbox's own namespace: nothing outside the submission shares it); ``None`` otherwise."""
    try:
        names = set(read(path))
    except (OSError, ValueError, KeyError):
        return None
    if names != {"lo"}:
        return None
    return lambda: loopback_bytes(path)
