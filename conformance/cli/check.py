"""tpconform check: the CI gate, the installed suite run by pytest.

usage: tpconform check --impl=SPEC [--world-sizes=1-8] [--dtypes=...] [--tp-profile=ci|dev|thorough]
                       [--known-failures=FILE] [any pytest option, e.g. --junitxml=FILE -k EXPR -x -n N]

SPEC is one of:
  path/to/layers.py      a file in the simple-module convention
  package.module:Object  an adapter class or object (see the README, "Write an adapter")
  NAME                   a registry entry (tpconform list-impls)

It is `python -m pytest -n 0 --impl=SPEC [options]`: with no test path given, the plugin collects the
suite's property tests (installed as tpconform.properties), and every pytest option works. `-n 0`
first: on small machines one process beats xdist workers that each import torch; a later -n wins.

Exit codes: 0 the impl conforms; 1 a property is violated (the report names it, with the shrunk case
and a replay line) or a known-failures entry matched nothing; 4 bad input (an unknown --impl, a bad
option or file), as one line on stderr. The suite's options are listed under "tensor-parallel
conformance" in: pytest --help
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: tpconform check --impl=SPEC [suite and pytest options]   (tpconform check --help)"


def _names_impl(args: list[str]) -> bool:
    return any(a == "--impl" or a.startswith("--impl=") for a in args)


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip())
        return 0
    if not _names_impl(args) and "--list-impls" not in args:
        print("tpconform check: name the implementation to check with --impl=SPEC "
              "(a registry name, path/to/file.py, or module:object)", file=sys.stderr)
        return 4  # pytest's own exit code for a usage error
    sys.stdout.flush()
    # a fresh interpreter: pytest then imports the suite itself (so it can rewrite its asserts: no
    # PytestAssertRewriteWarning), and ``-m pytest`` puts the working directory on sys.path, as for a
    # user's own uninstalled package
    os.execv(sys.executable, [sys.executable, "-m", "pytest", "-n", "0", *args])
    return 4  # not reached
