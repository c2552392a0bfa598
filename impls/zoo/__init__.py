"""The seeded-bug zoo: wrong implementations the suite must catch, each for the right reason.

Every family's are in its folder (``conformance/families/<name>/bugs/``: ``bugs.toml`` lists them, one
module each beside it), found by convention: no list here to edit. ``ZOO``: the single layer's, one
layer on the whole world, each caught by its property's test (``tests/selftest/test_zoo.py``;
``benchmarks/time_to_find.py`` measures how fast); ``EXTENSIONS``: every other family's, whose variant
reads ``"<family>/<detail>"``, each caught by its own search (``tests/selftest/test_extensions.py``).
"""

from __future__ import annotations

from tpconform.families.folders import each
from tpconform.impls.seeded import SeededBug

_EVERY: tuple[SeededBug, ...] = tuple(bug for _, module in each("bugs") for bug in module.BUGS)
ZOO: tuple[SeededBug, ...] = tuple(bug for bug in _EVERY if "/" not in bug.variant)
EXTENSIONS: tuple[SeededBug, ...] = tuple(bug for bug in _EVERY if "/" in bug.variant)

ENTRIES = tuple(bug.entry for bug in ZOO + EXTENSIONS)
BY_NAME = {bug.name: bug for bug in ZOO + EXTENSIONS}
