"""tpconform: a conformance suite for tensor-parallel layers in PyTorch.

Every subcommand has its own help: ``tpconform SUBCOMMAND --help``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tpconform.spec.options import DEFAULT_DTYPES


def _replay(args) -> int:
    from tpconform.cli.replay import replay  # lazy: only the subcommand's

    return replay(args)


def _list(_args) -> int:
    from tpconform.impls.registry import available  # lazy: only the subcommand's

    for e in available().values():
        print(f"{e.name:<36} {e.summary}{'' if e.correct else '  [seeded bug]'}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["check"]:  # the CI gate; every later argument is pytest's (conformance/cli/check.py)
        from tpconform.cli.check import main as check  # lazy: only the subcommand's

        return check(argv[1:])
    if argv[:1] == ["torchrun"]:  # one rank of a torchrun launch; later arguments are pytest's
        from tpconform.transport.torchrun_rank import main as torchrun_rank  # lazy: only the subcommand's

        return torchrun_rank(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's usage error: bad input exits 4, as check does
        if exc.code == 2:
            return 4
        raise
    return args.func(args)


def build_parser() -> argparse.ArgumentParser:
    """The command line (``check`` and ``torchrun`` pass their arguments to pytest: main() routes them first)."""
    parser = argparse.ArgumentParser(
        prog="tpconform", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Checks that tensor-parallel layers compute what the dense layer computes: outputs and "
                    "gradients, on every rank, on real process groups.",
        epilog="The everyday command is pytest itself: pytest --impl=path/to/layers.py (or module:Object, or a "
               "registry name)\nruns the whole suite; `tpconform check` is the same, for CI. Exit codes: 0 "
               "conforms, 1 a violation, 4 bad input.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="the CI gate: the whole suite against --impl=SPEC, run by pytest")
    sub.add_parser("torchrun", help="the suite on the ranks of a torchrun launch (multi-node): "
                   "torchrun ... -m tpconform torchrun --impl=SPEC")
    rp = sub.add_parser("replay", help="run one case (the token a failure report prints) and check its properties",
                        description="Runs one case, the quoted token on a failure report's replay line, and "
                                    "checks every property of its family (or one): exit 0 when none is "
                                    "violated, 1 when one is, 4 for bad input.")
    rp.add_argument("--impl", default="reference", metavar="SPEC",
                    help="the implementation: path/to/layers.py, module:Object or a registry name (default: reference)")
    rp.add_argument("--property", default=None, metavar="NAME",
                    help="check only this property (e.g. output_matches_the_dense_layer; default: all)")
    rp.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                    help="seconds the example may take before it fails as a hang (default: 20)")
    rp.add_argument("case", help="the case token from a failure report, e.g. 'kind=row,world_size=2,...' "
                                 "or 'primitives:world_size=2,...'")
    rp.set_defaults(func=_replay)
    sub.add_parser("list-impls", help="list the registry: the reference, the peers and the seeded bugs",
                   description="Lists every registry name --impl accepts.").set_defaults(func=_list)
    dp = sub.add_parser("diff", help="run the same generated cases on several impls and report disagreements",
                        description="Runs the same generated cases on several impls and reports each against "
                                    "the reference and every pair against each other.")
    dp.add_argument("--impls", required=True, metavar="SPECS",
                    help="comma-separated impl specs, e.g. dtensor,fairscale,megatron")
    dp.add_argument("--examples", type=int, default=10, metavar="N", help="generated cases per variant (default: 10)")
    dp.add_argument("--world-sizes", default="1-4", metavar="LIST", help="e.g. 1-4 or 2,3 (default: 1-4)")
    dp.add_argument("--dtypes", default=DEFAULT_DTYPES, metavar="LIST",
                    help="comma-separated dtypes (default: all four)")
    dp.add_argument("--seed", type=int, default=0, help="the generator's seed: the same seed, the same cases (default: 0)")
    dp.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="seconds one case may take (default: 60)")
    dp.add_argument("--known-failures", action="append", default=[], metavar="FILE",
                    help="a TOML file of known deviations: differences it explains are reported as such (repeatable)")
    dp.add_argument("--verbose", action="store_true", help="also print cases with only explained differences")
    dp.set_defaults(func=lambda args: importlib.import_module("tpconform.cli.differential").main(args))
    from tpconform.cli.deviation_report import register as register_report  # lazy: only the subcommand's
    from tpconform.grading.cli import register as register_grade  # lazy: only the subcommand's

    register_report(sub)  # tpconform report-deviation ID: a known deviation as an upstream bug report

    register_grade(sub)  # tpconform grade SUBMISSIONS/ --out REPORT/ (docs/GRADING.md)
    return parser


if __name__ == "__main__":
    sys.exit(main())
