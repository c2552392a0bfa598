"""Command line: ``python -m tpconform replay --impl=SPEC CASE``, ``... list-impls``, ``... torchrun``,
``... report-deviation ID``.

``replay`` runs one case (the token printed in a failure report) and checks every property, or
only ``--property=NAME``; it exits 1 when any property is violated.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def _replay(args) -> int:
    from tpconform.cli.replay import replay

    return replay(args)


def _list(_args) -> int:
    from tpconform.impls.registry import available

    for e in available().values():
        print(f"{e.name:<36} {e.summary}{'' if e.correct else '  [seeded bug]'}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["check"]:  # the CI gate; every later argument is pytest's (conformance/cli/check.py)
        from tpconform.cli.check import main as check

        return check(argv[1:])
    if argv[:1] == ["torchrun"]:  # one rank of a torchrun launch; later arguments are pytest's
        from tpconform.transport.torchrun_rank import main as torchrun_rank

        return torchrun_rank(argv[1:])
    parser = argparse.ArgumentParser(prog="tpconform", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="the CI gate: run the installed suite with pytest (tpconform check --help)")
    sub.add_parser("torchrun", help="as every process of a torchrun launch, multi-node capable: "
                   "torchrun ... -m tpconform torchrun --impl=SPEC [pytest options] [-- TESTS]")
    rp = sub.add_parser("replay", help="run one case and check the properties")
    rp.add_argument("--impl", default="reference")
    rp.add_argument("--property", default=None)
    rp.add_argument("--timeout", type=float, default=20.0)
    rp.add_argument("case", help="the case token from a failure report (any family: family:fields)")
    rp.set_defaults(func=_replay)
    sub.add_parser("list-impls", help="list the registry").set_defaults(func=_list)
    dp = sub.add_parser("diff", help="run the same generated cases on several impls and report disagreements")
    dp.add_argument("--impls", required=True, help="comma-separated impl specs, e.g. dtensor,fairscale,megatron")
    dp.add_argument("--examples", type=int, default=10, help="generated cases per variant (default: 10)")
    dp.add_argument("--world-sizes", default="1-4")
    dp.add_argument("--dtypes", default="float32,float64,bfloat16,float16")
    dp.add_argument("--seed", type=int, default=0)
    dp.add_argument("--timeout", type=float, default=60.0)
    dp.add_argument("--known-failures", action="append", default=[], metavar="FILE")
    dp.add_argument("--verbose", action="store_true", help="also print cases with only explained differences")
    dp.set_defaults(func=lambda args: importlib.import_module("tpconform.cli.differential").main(args))
    from tpconform.cli.deviation_report import register as register_report
    from tpconform.grading.cli import register as register_grade

    register_report(sub)  # tpconform report-deviation ID: a known deviation as an upstream bug report

    register_grade(sub)  # tpconform grade SUBMISSIONS/ --out REPORT/ (docs/GRADING.md)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage error: grade exits 4 for bad input, as check does
        if argv[:1] == ["grade"] and exc.code == 2:
            return 4
        raise
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
