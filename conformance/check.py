"""``tpconform check --impl=SPEC [pytest options]``: the CI gate — the installed suite, run by pytest.

It is exactly ``pytest --pyargs tpconform_properties --impl=SPEC [pytest options]``: the property
tests ship in the wheel as the package ``tpconform_properties`` (``tests/properties`` in a
checkout), and every pytest option works (``--junitxml``, ``-k``, ``-x``, ``-n``, ...). The exit
code is pytest's: 0 when the impl conforms, 1 when a property is violated, 2-4 for bad input.
"""

from __future__ import annotations

import sys

PACKAGE = "tpconform_properties"
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

    return int(pytest.main(["--pyargs", PACKAGE, *args]))
