"""What a property returns: the ways one example violates it (an empty list: it holds)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:  # a Violation is plain data: the host reads them (reports) without torch, which compare needs
    from tpconform.spec.compare import Mismatch


@dataclass
class Violation:
    property: str
    message: str
    rank: Optional[int] = None
    quantity: str = ""  # what was wrong: "output", "weight grad", "run", "construction", ...
    mismatch: Optional[Mismatch] = None
    where: Any = None  # a family's own locator (e.g. the TP sub-group), for its likely cause


_RANK = re.compile(r"rank (\d+)\b")


def rank_span(ranks: Sequence[int]) -> str:
    """``[3]`` → ``rank 3``; ``[0, 1, 2, 3]`` → ``ranks 0-3``; ``[0, 2, 3]`` → ``ranks 0, 2-3``."""
    rs = sorted(set(ranks))
    if len(rs) == 1:
        return f"rank {rs[0]}"
    runs: list[list[int]] = []
    for r in rs:
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    return "ranks " + ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def fold_ranks(items: Sequence[tuple[Optional[int], str]]) -> list[str]:
    """``(rank, text)`` pairs as lines, where texts that differ only in their leading ``rank N`` are
    one line naming every such rank (``ranks 0-3 ...``), at the first one's place."""
    groups: dict[str, list[int]] = {}
    order: list[tuple[str, Optional[str]]] = []  # (key, text of an unfoldable item)
    for rank, text in items:
        m = _RANK.match(text)
        if rank is None or m is None or int(m.group(1)) != rank:
            order.append(("", text))
            continue
        key = text[m.end():]
        if key not in groups:
            groups[key] = []
            order.append((key, None))
        groups[key].append(rank)
    return [text if text is not None else rank_span(groups[key]) + key for key, text in order]


def construction_raised(failed: Sequence[int], errors: dict[int, Any], why: str = "") -> str:
    """``construction raised on rank(s) [0, 1]{why}`` and each rank's error (type, message, the frames of
    the code under test), ranks whose errors are the same folded into one."""
    lines = fold_ranks([(r, f"rank {r}: {str(e)[:4000]}") for r, e in sorted(errors.items()) if e])
    return f"construction raised on rank(s) {sorted(failed)}{why}" + "".join(f"\n{line}" for line in lines)
