"""Hypothesis profiles for the property tests, chosen with ``--tp-profile``.

- ``ci``: derandomized (the same examples every run), no example database; the gate.
- ``dev``: random, with an example database kept per impl, so one impl's saved failures never
  replay against another.
- ``thorough``: many examples, for nightly runs.
"""

from __future__ import annotations

import hashlib
import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILES = ("ci", "dev", "thorough")
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
_EXAMPLES = {"ci": 15, "dev": 40, "thorough": 400}
_active: dict = {"name": "ci", "impl": "reference"}


def build(name: str, impl: str, db_root: str = ".hypothesis") -> settings:
    if name not in _EXAMPLES:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    if name == "ci":
        db = None
    else:  # keyed per impl: one impl's saved failures never replay against another
        key = hashlib.sha1(impl.encode()).hexdigest()[:12]
        db = DirectoryBasedExampleDatabase(os.path.join(db_root, "tpconform", key))
    # a failure reports its shrunk case and a replay line (tpconform.engine.report): no reproduce_failure
    # blob, no "explain" phase (it names lines of the suite's code, not the candidate's), one bug per test
    return settings(max_examples=_EXAMPLES[name], derandomize=name == "ci", database=db, deadline=None,
                    suppress_health_check=_SLOW_IS_FINE, print_blob=False, report_multiple_bugs=False,
                    phases=[p for p in Phase if p is not Phase.explain])


def activate(name: str, impl: str) -> None:
    build(name, impl)  # validates the name
    _active.update(name=name, impl=impl)


def active() -> settings:
    return build(_active["name"], _active["impl"])


def active_name() -> str:
    return _active["name"]
