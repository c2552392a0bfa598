"""What the registry lists, and what it raises for an ``--impl`` it cannot use (no dependencies)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:object"
    summary: str
    correct: bool = True  # False for the seeded-bug zoo


class ImplError(Exception):
    """An ``--impl`` that cannot be used; the message is one line meant for the user."""
