"""Differential mode: the same generated cases on several impls at once.

Every case is run on every impl (each on the same persistent groups, in worker processes) and
checked twice: each impl against the float64 dense reference (every property of the spec), and
every pair of impls against each other, on partition-free quantities (sharded outputs, sliced input
grads and weight/bias shard grads are concatenated in rank order first, so a ``torch.chunk`` impl
and a ``torch.tensor_split`` impl compare like for like). Two impls may each be off the truth by
the rounding bound of ``tpconform.spec.tolerance``, so they may differ from each other by twice it.

A failure explained by a known-failures entry (the peers' own file, plus ``--known-failures``) is
reported as expected; a pairwise disagreement is expected when either side's deviation is known on
that quantity, or when one impl declared the case unsupported (``uneven_shards=False``) and raised.

    python -m tpconform diff --impls=reference,dtensor,fairscale,megatron --examples=20
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from hypothesis import HealthCheck, given, seed, settings
from tpconform.engine.known_failures import KnownFailures, KnownFailuresError, default_files
from tpconform.engine.runner import ImplUnusable
from tpconform.engine.suite import Suite
from tpconform.families.linear import verdict
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.family import FAMILY as LINEAR
from tpconform.impls.registry import ImplError, classify
from tpconform.spec import tolerance as tol
from tpconform.spec.compare import compare
from tpconform.spec.options import parse_dtypes, parse_world_sizes
from tpconform.strategies import VARIANTS, layer_cases
from tpconform.strategies import world_sizes as ws_strategy
from tpconform.transport.harness import GroupPool

QUANTITY_PROPERTY = {
    "output": "output_matches_the_dense_layer",
    "input grad": "input_grad_matches_the_dense_layer",
    "weight grad": "weight_grad_matches_the_dense_layer",
    "bias grad": "bias_grad_matches_the_dense_layer",
}


@dataclass
class Verdict:
    """One impl on one case: its violations, and which of them are known."""

    impl: str
    evidence: verdict.Evidence
    backward: bool = True  # its linear layers declare a backward (capability backward)
    unexpected: dict[str, list[str]] = field(default_factory=dict)  # property -> messages
    expected: dict[str, list[str]] = field(default_factory=dict)  # property -> entry ids

    @property
    def status(self) -> str:
        oc = self.evidence.outcome
        return "crashed" if oc.crash else "rejected" if oc.construct_failed else "ran"


@dataclass
class CaseReport:
    case: LayerCase
    verdicts: list[Verdict]
    disagreements: list[str] = field(default_factory=list)  # unexplained
    explained: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.disagreements and not any(v.unexpected for v in self.verdicts)


def _whole(ev: verdict.Evidence, quantity: str) -> Optional[torch.Tensor]:
    """A quantity as the dense layer has it: per-rank pieces concatenated in rank order."""
    key = quantity.replace(" ", "_")
    parts = [r.get(key) for r in ev.ranks]
    if any(p is None for p in parts) and not (quantity == "bias grad" and ev.case.kind == "row"):
        return None
    if quantity == "output":
        return torch.cat(parts, -1) if ev.output_is_sharded else parts[0]
    if quantity == "input grad":
        return torch.cat(parts, -1) if ev.input_is_sliced else parts[0]
    if quantity == "weight grad":
        return torch.cat(parts, ev.split_dim)
    if ev.case.kind == "column":  # bias grad
        return torch.cat(parts)
    return next((p for p in parts if p is not None), None)


def _bound(ev: verdict.Evidence, quantity: str) -> torch.Tensor:
    t, c = ev.outcome.tensors, ev.case
    if quantity == "output":
        return tol.output_bound(t.x, t.weight, t.bias, c.torch_dtype, c.world_size)
    if quantity == "input grad":
        return tol.input_grad_bound(t.grad_out, t.weight, c.torch_dtype, c.world_size)
    if quantity == "weight grad":
        return tol.weight_grad_bound(t.grad_out, t.x, c.torch_dtype, c.world_size)
    return tol.bias_grad_bound(t.grad_out, c.torch_dtype, c.world_size)


def compare_pair(a: Verdict, b: Verdict) -> list[tuple[str, str]]:
    """``(quantity, message)`` for each way impls ``a`` and ``b`` disagree on one case."""
    if a.status != b.status:
        return [("construction", f"{a.impl} {a.status}, {b.impl} {b.status}")]
    if a.status != "ran":
        return []
    out = []
    forward_only = not (a.backward and b.backward)  # one declares no backward: its forward alone compares
    for quantity in QUANTITY_PROPERTY:
        if quantity == "bias grad" and a.evidence.outcome.tensors.bias is None:
            continue
        if forward_only and quantity != "output":
            continue
        x, y = _whole(a.evidence, quantity), _whole(b.evidence, quantity)
        if x is None or y is None:
            if (x is None) != (y is None):
                out.append((quantity, f"{quantity}: {a.impl} {'has none' if x is None else 'has one'}, "
                                      f"{b.impl} {'has none' if y is None else 'has one'}"))
            continue
        if x.shape != y.shape:
            out.append((quantity, f"{quantity}: {a.impl} shape {list(x.shape)}, {b.impl} shape {list(y.shape)}"))
            continue
        m = compare(x, y.double(), 2 * _bound(a.evidence, quantity), f"{quantity} of {a.impl} vs {b.impl}")
        if m:
            out.append((quantity, str(m)))
    return out


class Differential:
    """Runs cases on several impls sharing one pool; :meth:`run_case` returns a :class:`CaseReport`."""

    def __init__(self, impls: Sequence[str], pool: GroupPool, known: Optional[KnownFailures] = None):
        self.suites = [Suite(spec, pool) for spec in impls]
        self.known = known or KnownFailures()

    def verdict(self, suite: Suite, case: LayerCase) -> Verdict:
        ev = suite.evidence(case)
        v = Verdict(suite.impl_spec, ev, backward=suite.capabilities.of(LINEAR.name).backward)
        for prop in verdict.SPEC:
            if prop == "ranks_agree_on_the_output" and ev.output_is_sharded:
                continue
            if LINEAR.not_declared(suite, None, prop):  # left out by its capabilities (forward-only: the grads)
                continue
            found = verdict.evaluate(ev, prop)
            used = self.known.triage(suite.impl_spec, prop, case, [f.message for f in found])
            if used is None:
                v.unexpected[prop] = [f.message for f in found]
            elif used:
                v.expected[prop] = [e.id for e in used]
        return v

    def run_case(self, case: LayerCase) -> CaseReport:
        variant = next(v for v in VARIANTS if v.kind == case.kind and v.option == (
            case.gather_output if case.kind == "column" else case.input_is_parallel))
        supporting = [s for s in self.suites if s.unsupported(variant) is None]
        report = CaseReport(case, [self.verdict(s, case) for s in supporting])
        for a, b in itertools.combinations(report.verdicts, 2):
            for quantity, message in compare_pair(a, b):
                if self._explained(case, quantity, a, b):
                    report.explained.append(message)
                else:
                    report.disagreements.append(message)
        return report

    def _explained(self, case: LayerCase, quantity: str, a: Verdict, b: Verdict) -> bool:
        if quantity == "construction":
            return any(v.status == "rejected" and case.uneven and not v.evidence.uneven_shards_supported
                       for v in (a, b)) or any(v.expected for v in (a, b))
        prop = QUANTITY_PROPERTY[quantity]
        return any(prop in v.expected or "output_shape_and_dtype_match_nn_linear" in v.expected for v in (a, b))

    def generate(self, examples: int, world_sizes: Sequence[int], dtypes: Sequence[str], rng_seed: int = 0):
        """Run ``examples`` generated cases per variant; yields a report per case."""
        reports: list[CaseReport] = []
        for variant in VARIANTS:
            strategy = layer_cases(variant=variant, world_sizes=ws_strategy(allowed=world_sizes), dtypes=list(dtypes))

            @seed(rng_seed)
            @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case):
                reports.append(self.run_case(case))

            run()
            yield from reports
            reports.clear()


def format_report(r: CaseReport) -> list[str]:
    lines = [f"case {r.case.token()}"]
    for v in r.verdicts:
        state = "ok" if not v.unexpected and not v.expected else ""
        if v.status == "rejected":
            state = "raised at construction" + (" (declared)" if not v.unexpected else "")
        lines.append(f"  {v.impl}: {state}".rstrip())
        for prop, messages in v.unexpected.items():
            lines.append(f"    VIOLATES {prop}: {messages[0].splitlines()[0][:200]}")
        for prop, ids in v.expected.items():
            lines.append(f"    known deviation {', '.join(ids)} ({prop})")
    lines += [f"  DISAGREE {m.splitlines()[0][:200]}" for m in r.disagreements]
    lines += [f"  differ (explained) {m.splitlines()[0][:160]}" for m in r.explained]
    return lines


def main(args) -> int:
    """The ``diff`` subcommand (see ``tpconform.__main__``)."""
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    try:
        sizes = parse_world_sizes(args.world_sizes)
        dtypes = parse_dtypes(args.dtypes)
        for spec in impls:
            classify(spec)
        paths = list(args.known_failures) + [p for spec in impls for p in default_files(spec)]
        known = KnownFailures.load(dict.fromkeys(paths))
    except (ValueError, ImplError, KnownFailuresError) as exc:
        print(f"diff: {exc}", file=sys.stderr)
        return 4
    if len(impls) < 2:
        print("diff: name at least two impls, e.g. --impls=dtensor,fairscale", file=sys.stderr)
        return 4
    pool = GroupPool(timeout_s=args.timeout)
    counts = {"cases": 0, "clean": 0, "disagreements": 0, "explained": 0, "unexpected": 0}
    try:
        diff = Differential(impls, pool, known)
        usable = []
        for suite in diff.suites:  # load each impl once; one that cannot be used is left out, with its line
            try:
                suite.description
                usable.append(suite)
            except (ImplError, ImplUnusable) as exc:
                print(f"diff: left out: {exc}", file=sys.stderr)
        diff.suites = usable
        impls = [s.impl_spec for s in usable]
        if len(usable) < 2:
            print("diff: fewer than two of the impls can be used here", file=sys.stderr)
            return 4
        for report in diff.generate(args.examples, sizes, dtypes, args.seed):
            counts["cases"] += 1
            counts["clean"] += report.clean
            counts["disagreements"] += len(report.disagreements)
            counts["explained"] += len(report.explained)
            counts["unexpected"] += sum(bool(v.unexpected) for v in report.verdicts)
            if not report.clean or (args.verbose and (report.explained or any(v.expected for v in report.verdicts))):
                print("\n".join(format_report(report)))
    except (ImplError, ImplUnusable) as exc:
        print(f"diff: {exc}", file=sys.stderr)
        return 4
    finally:
        pool.close()
    print(f"{counts['cases']} cases on {', '.join(impls)}: {counts['clean']} clean; "
          f"{counts['unexpected']} unexpected impl-vs-reference failures; "
          f"{counts['disagreements']} unexplained and {counts['explained']} explained pairwise differences")
    for e in known.entries:
        if e.matched:
            print(f"  known deviation {e.id}: {e.matched} examples")
    return 0 if counts["clean"] == counts["cases"] else 1
