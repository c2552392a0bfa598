"""``tpconform check --impl=SPEC [pytest options]``: the CI gate — the installed suite, run by pytest.

It is ``pytest --pyargs tpconform.properties -n 0 --impl=SPEC [pytest options]``: the property
tests ship in the wheel as the package ``tpconform.properties`` (``tests/properties`` in a
checkout), and every pytest option works (``--junitxml``, ``-k``, ``-x``, ``-n``, ...). The exit
code is pytest's: 0 when the impl conforms, 1 when a property is violated (or a known-failures
entry matched nothing), 4 for bad input such as an unknown ``--impl``.
"""

from __future__ import annotations

import os
import sys

PACKAGE = "tpconform.properties"
USAGE = "usage: tpconform check --impl=SPEC [--tp-profile=ci|dev|thorough] [pytest options]"


def _names_impl(args: list[str]) -> bool:
    return any(a == "--impl" or a.startswith("--impl=") for a in args)


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip() + "\n\n" + USAGE + "\n\nThe suite's options are listed under "
              "'tensor-parallel conformance' in: pytest --help")
        return 0
    if not _names_impl(args) and "--list-impls" not in args:
        print("tpconform check: name the implementation to check with --impl=SPEC "
              "(a registry name, path/to/file.py, or module:object)", file=sys.stderr)
        return 4  # pytest's own exit code for a usage error
    import pytest

    if os.getcwd() not in sys.path:  # as ``python -m pytest`` does: the repo's own package, uninstalled
        sys.path.insert(0, os.getcwd())
    # ``-n 0`` first: on small CI machines one process beats xdist workers that each import torch and
    # start their own process groups (README, "Speed"); a later -n from the user wins.
    return int(pytest.main(["--pyargs", PACKAGE, "-n", "0", *args]))
