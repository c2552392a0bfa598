"""Hypothesis profiles for the property tests, chosen with ``--tp-profile``.

- ``ci``: derandomized (the same examples every run), no example database; the gate.
- ``dev``: random, with an example database kept per impl, so one impl's saved failures never
  replay against another.
- ``thorough``: many examples, for nightly runs.
"""

from __future__ import annotations

import hashlib
import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILES = ("ci", "dev", "thorough")
_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
_active: dict = {"name": "ci", "impl": "reference"}


def build(name: str, impl: str, db_root: str = ".hypothesis") -> settings:
    if name == "ci":
        return settings(max_examples=15, derandomize=True, database=None, **_COMMON)
    key = hashlib.sha1(impl.encode()).hexdigest()[:12]
    db = DirectoryBasedExampleDatabase(os.path.join(db_root, "tpconform", key))
    if name == "dev":
        return settings(max_examples=40, database=db, **_COMMON)
    if name == "thorough":
        return settings(max_examples=400, database=db, **_COMMON)
    raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")


def activate(name: str, impl: str) -> None:
    build(name, impl)  # validates the name
    _active.update(name=name, impl=impl)


def active() -> settings:
    return build(_active["name"], _active["impl"])


def active_name() -> str:
    return _active["name"]
