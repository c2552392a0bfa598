"""A verdict's log as a teacher reads it: without the lines every run prints whatever the submission
does, identical lines in a row folded into one."""

from __future__ import annotations

import os
import re

# printed by torch's c10d for every connection in the sandbox's network namespace (no resolvable
# hostname there); says nothing about the submission
NOISE = (
    re.compile(r"\[c10d\] The hostname of the client socket cannot be retrieved"),
)


def without_noise(text: str) -> str:
    """``text`` less the :data:`NOISE` lines, each run of identical lines as one line and a count."""
    out: list[str] = []
    last, repeats = None, 0
    for line in text.splitlines():
        if any(p.search(line) for p in NOISE):
            continue
        if line == last:
            repeats += 1
            continue
        if repeats:
            out.append(f"  [the line above {repeats} more time{'s' if repeats > 1 else ''}]")
        out.append(line)
        last, repeats = line, 0
    if repeats:
        out.append(f"  [the line above {repeats} more time{'s' if repeats > 1 else ''}]")
    return "\n".join(out)


def tail(path: str, keep: int = 4000, read: int = 256 << 10) -> str:
    """The last ``keep`` characters of the file at ``path`` without noise, from its last ``read``
    bytes (so a tail of noise still leaves the lines before it); ``""`` when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(os.fstat(fh.fileno()).st_size - read, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = without_noise(text)
    return text[-keep:]
