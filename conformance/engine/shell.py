"""Replay lines as shell text (no dependencies: the grader's report writer uses them without torch).

Every argument is one shell word on one line, whatever it holds (a file named ``r$(touch PWNED).py``
is replayed as ``--impl='r$(touch PWNED).py'``)."""

from __future__ import annotations

import shlex
from typing import Optional


def shell_word(arg: str) -> str:
    """``arg`` as one shell word on one line, whatever it holds: ``shlex.quote`` where every character
    is printable; else ANSI-C quoting (``$'...'``, bash/zsh/ksh), each other byte as ``\\xHH`` (a file
    name with a newline or with bytes that are not UTF-8 stays one pasteable line that runs nothing)."""
    if arg.isprintable():
        return shlex.quote(arg)
    out = []
    for ch in arg:
        if ch.isprintable() and ch not in "\\'":
            out.append(ch)
        elif ch in "\\'":
            out.append("\\" + ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
    return "$'" + "".join(out) + "'"


def replay_line(impl_spec: str, token: str, prop: Optional[str] = None) -> str:
    """The command that replays the case ``token`` against ``impl_spec``: every part one shell word."""
    cmd = f"python -m tpconform replay --impl={shell_word(impl_spec)} {shell_word(token)}"
    return cmd + (f" --property={shell_word(prop)}" if prop else "")
