"""Text a submission controls (its file name, what its code raised or printed) as Markdown *data*.

:func:`text` gives a string that renders as itself on one line, in a paragraph, a heading, a list
item or a GitHub table cell: no newline (it would end the row or start a forged one), no pipe (a new
cell), no emphasis, link, image, HTML tag or entity. :func:`code` gives a code span of it, for lines
meant to be copied (a replay command). Characters that are not printable appear as escapes (``\\n``,
``\\x1b``, ``\\u202e``), so nothing the reader sees differs from what is there.
"""

from __future__ import annotations

import re

# ASCII punctuation with a meaning in CommonMark or GitHub's tables; CommonMark lets a backslash
# escape any ASCII punctuation. "_" only where it could open or close emphasis (not inside a word).
_SPECIAL = set("\\`*[]<>|#!~&")


def visible(s: str) -> str:
    """``s`` with each character that is not printable as a Python-style escape."""
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def text(s: object) -> str:
    """``s`` as Markdown that renders as exactly its (visible) characters, on one line."""
    v = visible(str(s))
    out = []
    for i, ch in enumerate(v):
        if ch in _SPECIAL:
            out.append("\\" + ch)
        elif ch == "_" and not (0 < i < len(v) - 1 and v[i - 1].isalnum() and v[i + 1].isalnum()):
            out.append("\\_")
        else:
            out.append(ch)
    return "".join(out)


def code(s: object) -> str:
    """``s`` as one inline code span (for list items and paragraphs, not table cells: GitHub splits a
    row at a pipe even inside a code span), fenced by more backticks than any run inside it."""
    v = visible(str(s))
    runs = [len(r) for r in re.findall(r"`+", v)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if v.startswith(("`", " ")) or v.endswith(("`", " ")) else ""
    return f"{fence}{pad}{v}{pad}{fence}"
