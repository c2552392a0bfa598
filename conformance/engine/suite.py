"""The suite as property tests use it: run a case for the impl under test, check one property,
and raise an ``AssertionError`` that reads as a complete failure report."""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from conformance.engine.runner import Runner
from conformance.families.linear import properties
from conformance.families.linear.diagnosis import likely_cause
from conformance.families.linear.properties import Evidence, Violation
from conformance.families.subgroups import verdict as subgroups
from conformance.spec.cases import STAGES, LayerCase
from conformance.spec.dense import dense_linear
from conformance.transport.harness import GroupPool
from impls.protocol import Capabilities
from strategies import DTYPES, Variant, layer_cases, world_sizes


class Suite:
    def __init__(self, impl_spec: str, pool: Optional[GroupPool] = None, *,
                 world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
        self.impl_spec = impl_spec
        self.runner = Runner(impl_spec, pool)
        self.world_sizes = tuple(world_sizes)
        self.dtypes = tuple(dtypes)
        self.examples = 0
        self._strategies: dict = {}

    def unsupported(self, variant: Variant) -> Optional[str]:
        """Why the impl does not declare ``variant`` (``None`` when it does)."""
        caps = self.capabilities
        if variant.kind == "column" and variant.gather_output not in caps.column_gather_output:
            return f"{self.impl_spec} does not declare gather_output={variant.gather_output}"
        if variant.kind == "row" and variant.input_is_parallel not in caps.row_input_is_parallel:
            return f"{self.impl_spec} does not declare input_is_parallel={variant.input_is_parallel}"
        if not self._dtypes():
            return f"{self.impl_spec} declares none of the dtypes {list(self.dtypes)}"
        return None

    def _dtypes(self) -> list[str]:
        return [d for d in self.dtypes if d in self.capabilities.dtypes]

    def cases(self, variant: Variant):
        """The Hypothesis strategy of cases for ``variant`` within this run's options (built once:
        Hypothesis works out a new strategy's properties on first use, at a cost per example)."""
        if variant not in self._strategies:
            self._strategies[variant] = self._cases(variant)
        return self._strategies[variant]

    def _cases(self, variant: Variant):
        # an impl that may reject non-divisible dims gets mostly divisible cases: an uneven case
        # only checks that it is rejected, and must not crowd out the cases that test the maths
        uneven = True if self.capabilities.uneven_shards else "rarely"
        return layer_cases(variant=variant, world_sizes=world_sizes(allowed=self.world_sizes),
                           dtypes=self._dtypes(), uneven=uneven)

    @property
    def pool(self) -> GroupPool:
        return self.runner.pool

    @property
    def description(self) -> dict:
        return self.runner.describe()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities.from_dict(self.description["capabilities"])

    @contextmanager
    def bounded(self, timeout_s: Optional[float], why: str = "") -> Iterator[None]:
        """Examples run inside get ``timeout_s`` instead of ``--tp-timeout`` (``None``: unchanged);
        a crash report says the bound came from ``why`` (a known hang's entry: known_failures)."""
        saved = self.runner.example_timeout
        self.runner.example_timeout = (timeout_s, why or "a bound") if timeout_s else None
        try:
            yield
        finally:
            self.runner.example_timeout = saved

    def evidence(self, case: LayerCase, stages: Optional[Sequence[str]] = None) -> Evidence:
        """Run ``case`` (the worker ``stages`` named, all by default) and pair what came back with
        the float64 ground truth, which the verdict computes while the ranks run."""
        dense = []
        outcome = self.runner.run(case, stages, while_waiting=lambda tensors: dense.append(dense_linear(tensors)))
        self.examples += 1
        truth = dense[0] if dense else dense_linear(outcome.tensors)
        return Evidence(case, outcome, truth, self.capabilities.uneven_shards)

    def checked(self, case: LayerCase, prop: str) -> tuple[Evidence, list[Violation]]:
        """The example run with only the stages ``prop`` reads; when it violates ``prop``, run again
        with every stage, so the report (and its likely cause) sees everything the layer did — unless
        a stage ``prop`` does not read crashes that run: the violation found stays the report."""
        ev = self.evidence(case, properties.stages_for([prop]))
        found = properties.evaluate(ev, prop)
        if found and not ev.outcome.crash and ev.outcome.stages != STAGES:
            full = self.evidence(case)
            again = properties.evaluate(full, prop)
            if again and not full.outcome.crash:
                return full, again
        return ev, found

    def violations(self, case: LayerCase, prop: str) -> list[Violation]:
        if case.tp_groups > 1:
            return subgroups.violations(self, case, prop)
        return self.checked(case, prop)[1]

    def check(self, case: LayerCase, prop: str) -> None:
        if case.tp_groups > 1:
            return subgroups.check(self, case, [prop])
        ev, found = self.checked(case, prop)
        if found:
            raise AssertionError(format_failure(ev, prop, found, self.impl_spec))


def replay_command(impl_spec: str, case: LayerCase, prop: Optional[str] = None) -> str:
    cmd = f"python -m conformance replay --impl={shlex.quote(impl_spec)} {shlex.quote(case.token())}"
    return cmd + (f" --property={prop}" if prop else "")


def format_failure(ev: Evidence, prop: str, found: list[Violation], impl_spec: str) -> str:
    lines = [
        f"property violated: {prop.replace('_', ' ')}",
        f"case: {ev.case.describe()}",
    ]
    for v in found[:8]:
        lines.append(f"  - {v.message}")
        cause = likely_cause(ev, v)
        if cause:
            lines.append(f"    likely cause: {cause}")
    if len(found) > 8:
        lines.append(f"  ... and {len(found) - 8} more")
    lines.append(f"replay: {replay_command(impl_spec, ev.case, prop)}")
    return "\n".join(lines)
