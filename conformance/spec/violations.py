"""What a property returns: the ways one example violates it (an empty list: it holds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tpconform.spec.compare import Mismatch


@dataclass
class Violation:
    property: str
    message: str
    rank: Optional[int] = None
    quantity: str = ""  # what was wrong: "output", "weight grad", "run", "construction", ...
    mismatch: Optional[Mismatch] = None
    where: Any = None  # a family's own locator (e.g. the TP sub-group), for its likely cause
