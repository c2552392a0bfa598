"""No false failures: run every correct impl over many Hypothesis seeds and count violations.

Runs the reference (and every other correct registry entry; the seeded bugs ``bug-*`` are
skipped) over ``--seeds`` different Hypothesis seeds, with the thorough profile's settings, on all
dtypes, world sizes 1-8, non-divisible dims, and a second case family with long reductions
(up to ``--long-features`` features and ``--long-rows`` batch rows) for bfloat16/float16, and the
covering cases of every case class and pair (``families/linear/case_classes.py``; per seed, on new
tensors). Every example is checked against every property of the spec; any violation is a false
failure. Then every other family the impl offers (``conformance/families``: sub-groups, MLP,
primitives, sequence parallel, embedding, merged, cross entropy), ``--family-examples`` cases per
seed and variant from the family's own strategy, then its anchors (``Family.anchors``, on new tensors
per seed), each judged on every property of its family.

It also reports, per dtype and quantity, the largest observed ``|error| / bound`` — how close a
correct impl comes to the tolerance model's bound (must stay < 1; much smaller is expected, the
bound is worst-case).

    python benchmarks/false_failures.py                       # 20 seeds: 5 min per impl on 2 cores
    python benchmarks/false_failures.py --seeds 2 --examples 5 --impls reference   # smoke run
    python benchmarks/false_failures.py --walls               # each rank walled apart, as grading runs it
    python benchmarks/false_failures.py --families block --impls reference   # one family alone

``--walls`` raises the rank walls (``tpconform.transport.rank_walls``: Landlock and seccomp, before any
impl code) in every worker, as a sandboxed grading does: a correct impl must not need what they shut.

Exit status 1 if any false failure was found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hypothesis import HealthCheck, given, seed, settings
from tpconform.engine import profiles
from tpconform.engine.runner import ImplUnusable
from tpconform.engine.suite import NotOffered, Suite
from tpconform.families.linear import verdict
from tpconform.families.linear.case_classes import covering_cases
from tpconform.families.registry import families as all_families
from tpconform.impls.registry import available
from tpconform.spec import tolerance as tol
from tpconform.strategies import DTYPES, VARIANTS, layer_cases, world_sizes
from tpconform.transport import rank_walls
from tpconform.transport.harness import GroupPool

QUANTITIES = ("output", "input_grad", "weight_grad", "bias_grad", "updated_weight_shard", "step_output",
              "step_input_grad")


def correct_impls() -> list[str]:
    return [e.name for e in available().values() if e.correct and not e.name.startswith("bug-")]


def error_ratios(ev) -> dict[str, float]:
    """Max ``|actual − exact| / bound`` over every rank, per quantity (only well-shaped results)."""
    t, case, d = ev.outcome.tensors, ev.case, ev.dense
    dt, ws = case.torch_dtype, case.world_size
    full = {
        "output": (d.output, tol.output_bound(t.x, t.weight, t.bias, dt, ws)),
        "input_grad": (d.input_grad, tol.input_grad_bound(t.grad_out, t.weight, dt, ws)),
        "weight_grad": (d.weight_grad, tol.weight_grad_bound(t.grad_out, t.x, dt, ws)),
    }
    if t.bias is not None:
        full["bias_grad"] = (d.bias_grad, tol.bias_grad_bound(t.grad_out, dt, ws))
    if t.update is not None and ev.ranks and ev.ranks[0].step_output is not None:  # the training step ran
        after = verdict.after_update(ev)
        full["updated_weight_shard"] = (after.weight, after.weight_error)
        full["step_output"] = (after.output, after.output_bound)
        full["step_input_grad"] = (after.input_grad, after.input_grad_bound)
    out: dict[str, float] = {}
    for q, (exp, bnd) in full.items():
        worst = 0.0
        for r, res in enumerate(ev.ranks):
            got = res.get(q)
            if got is None:
                continue
            e, b = exp, bnd
            s = ev.rank_slice(r)
            if q in ("output", "step_output") and ev.output_is_sharded or \
                    q in ("input_grad", "step_input_grad") and ev.input_is_sliced:
                e, b = e[..., s], b[..., s]
            elif q in ("weight_grad", "updated_weight_shard"):
                e, b = (e[s], b[s]) if ev.split_dim == 0 else (e[:, s], b[:, s])
            elif q == "bias_grad" and case.kind == "column":
                e, b = e[s], b[s]
            if tuple(got.shape) != tuple(e.shape) or e.numel() == 0:
                continue
            worst = max(worst, float(((got.double() - e).abs() / b).max()))
        out[q] = worst
    return out


def _run_family(suite, impl, fam, strategy, hseed, base, n, record) -> None:
    @seed(hseed)
    @settings(base, max_examples=n, database=None, derandomize=False, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        record(impl, fam, case, suite.evidence(case))

    run()


def _run_other_family(suite, impl, fam, variant, hseed, base, n, record_family) -> None:
    props = [p for p in fam.properties if not fam.not_applicable(suite, variant, p)]
    if not props:
        return

    @seed(hseed)
    @settings(base, max_examples=n, database=None, derandomize=False, suppress_health_check=list(HealthCheck))
    @given(case=suite.cases(variant, fam.name))
    def run(case):
        try:
            ev, found = suite.judged(case, props)
        except NotOffered:
            return
        record_family(impl, fam.name, case, found, ev)

    run()
    for case in fam.anchors(suite, variant):  # the family's fixed configs, on new tensors each seed
        case = replace(case, seed=case.seed + 1000 * hseed)
        try:
            ev, found = suite.judged(case, props)
        except NotOffered:
            return
        record_family(impl, fam.name, case, found, ev)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--examples", type=int, default=8, help="examples per seed, variant and case family")
    ap.add_argument("--impls", default=None, help="comma-separated (default: every correct registry entry)")
    ap.add_argument("--long-features", type=int, default=768)
    ap.add_argument("--long-rows", type=int, default=24, help="max side of a 2-dim batch in the long family")
    ap.add_argument("--family-examples", type=int, default=3,
                    help="examples per seed and variant of each family beyond the single layer")
    ap.add_argument("--budget-s", type=float, default=1380.0, help="stop starting new seeds after this long")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json", default=None, help="also write the summary here")
    ap.add_argument("--walls", action="store_true", help="wall the ranks apart as grading does (rank_walls)")
    ap.add_argument("--families", default=None,
                    help="comma-separated families to run (default: all; without linear, no single-layer cases)")
    args = ap.parse_args(argv)
    only = set(args.families.split(",")) if args.families else None
    if args.walls and rank_walls.unavailable() is not None:
        print(f"--walls: the rank walls cannot be raised here: {rank_walls.unavailable()}", file=sys.stderr)
        return 4

    impls = args.impls.split(",") if args.impls else correct_impls()
    pool = GroupPool(timeout_s=args.timeout)
    pool.walls = args.walls
    started = time.monotonic()
    examples = 0
    per_family: dict[str, int] = defaultdict(int)
    failures: list[dict] = []
    worst: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    seeds_done = 0
    unusable: dict[str, str] = {}
    base = profiles.build("thorough", "false-failures")

    def record(impl, fam, case, ev):
        nonlocal examples
        examples += 1
        per_family[fam] += 1
        ran = set(ev.outcome.stages)  # a forward-only impl runs no backward: what reads one is not judged
        bad = {p: [v.message.splitlines()[0][:300] for v in verdict.evaluate(ev, p)] for p in verdict.SPEC
               if set(verdict.NEEDS[p]) <= ran}
        bad = {p: m[:3] for p, m in bad.items() if m}
        if bad:
            failures.append({"impl": impl, "seed": ev.case.seed, "case": case.token(), "violations": bad})
            print(f"FALSE FAILURE {impl}: {case.token()}\n  {bad}", flush=True)
            return
        for q, ratio in error_ratios(ev).items():
            worst[case.dtype][q] = max(worst[case.dtype][q], ratio)
    def record_family(impl, fam_name, case, found, ev=None):
        nonlocal examples
        examples += 1
        per_family[fam_name] += 1
        bad = {p: [v.message.splitlines()[0][:300] for v in vs][:3] for p, vs in found.items() if vs}
        if bad:
            failures.append({"impl": impl, "family": fam_name, "case": case.token(), "violations": bad})
            print(f"FALSE FAILURE {impl}: {fam_name}:{case.token()}\n  {bad}", flush=True)
            return
        ratios = getattr(all_families()[fam_name].verdict, "error_ratios", None)  # a family that reports them
        if ratios is not None and ev is not None:
            for q, ratio in ratios(ev).items():
                worst[f"{fam_name}/{case.dtype}"][q] = max(worst[f"{fam_name}/{case.dtype}"][q], ratio)

    try:
        for s in range(args.seeds):
            if time.monotonic() - started > args.budget_s:
                break
            for impl in list(impls):
                suite = Suite(impl, pool, world_sizes=range(1, 9), dtypes=DTYPES)
                try:
                    suite.description
                except ImplUnusable as exc:
                    print(f"skipping {impl}: {exc}", flush=True)
                    impls.remove(impl)
                    unusable[impl] = str(exc)
                    continue
                for variant in VARIANTS if only is None or "linear" in only else ():
                    if suite.unsupported(variant):
                        continue
                    dts = suite._dtypes()
                    short = layer_cases(variant=variant, world_sizes=world_sizes(allowed=range(1, 9)), dtypes=dts)
                    low = [d for d in dts if d in ("bfloat16", "float16")]
                    families = {"short": short}
                    if low:
                        families["long"] = layer_cases(
                            variant=variant, world_sizes=world_sizes(allowed=range(1, 9)), dtypes=low,
                            max_features=args.long_features, max_batch_dims=2, max_batch_side=args.long_rows)

                    for fam, strategy in families.items():
                        _run_family(suite, impl, fam, strategy, s, base, args.examples, record)
                    for case in covering_cases(variant, range(1, 9), dts):  # the fixed cases, on new tensors
                        case = replace(case, seed=case.seed + 1000 * s)
                        record(impl, "covering", case, suite.evidence(case))
                for other in all_families().values():
                    if other.name == "linear" or not args.family_examples or (only and other.name not in only):
                        continue
                    for variant in other.variants():
                        _run_other_family(suite, impl, other, variant, s, base, args.family_examples, record_family)
            seeds_done += 1
            print(f"seed {s}: {examples} examples so far, {len(failures)} false failures, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    finally:
        pool.close()

    summary = {
        "impls": impls,
        "unusable": unusable,
        "seeds": seeds_done,
        "examples": examples,
        "examples_per_family": dict(per_family),
        "false_failures": len(failures),
        "failures": failures[:20],
        "max_error_over_bound": {d: dict(q) for d, q in worst.items()},
        "seconds": round(time.monotonic() - started, 1),
        "group_starts": pool.starts,
        "rank_walls": args.walls,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
