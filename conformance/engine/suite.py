"""The suite as property tests use it: run a case of any family for the impl under test, judge one
property, and raise an ``AssertionError`` that reads as a complete failure report."""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

from tpconform.engine.runner import Runner
from tpconform.families.registry import family, family_of
from tpconform.impls.protocol import Capabilities
from tpconform.spec.family import Family
from tpconform.spec.violations import Violation
from tpconform.strategies import DTYPES, Variant
from tpconform.strategies.case_classes import applicable_classes, classes_of
from tpconform.transport.contract import Pool
from tpconform.transport.harness import GroupPool


class NotOffered(Exception):
    """The impl offers none of a family's (optional) layers; the message is the skip line."""


class Suite:
    def __init__(self, impl_spec: str, pool: Optional[GroupPool] = None, *,
                 world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
        self.impl_spec = impl_spec
        self.runner = Runner(impl_spec, pool)
        self.world_sizes = tuple(world_sizes)
        self.dtypes = tuple(dtypes)
        self.examples = 0
        self._strategies: dict = {}
        self.coverage: dict[str, set[str]] = {}  # linear property -> the case classes it was judged on

    # -- the run's options and the impl's declaration ---------------------------------------------
    def _dtypes(self, family: str = "linear") -> list[str]:
        """The run's dtypes that family ``family`` is declared for."""
        return [d for d in self.dtypes if d in self.capabilities.of(family).dtypes]

    def unsupported(self, variant: Variant) -> Optional[str]:
        """Why the impl does not declare the linear layer ``variant`` (``None`` when it does)."""
        return family("linear").unsupported(self, variant)  # type: ignore[attr-defined]

    @property
    def pool(self) -> Pool:
        return self.runner.pool

    @property
    def description(self) -> dict:
        return self.runner.describe()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities.from_dict(self.description["capabilities"])

    def cases(self, variant: Any, family_name: str = "linear"):
        """The Hypothesis strategy of ``family_name``'s cases for ``variant`` within this run's options
        (built once: Hypothesis works out a new strategy's properties on first use, at a cost per example)."""
        key = (family_name, variant)
        if key not in self._strategies:
            self._strategies[key] = family(family_name).cases(self, variant)
        return self._strategies[key]

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

    # -- one example ----------------------------------------------------------------------------------
    def evidence(self, case, stages: Optional[Sequence[str]] = None):
        """Run ``case`` (the worker ``stages`` named, all by default; families without stages run
        whole) and pair what came back with the float64 ground truth. ``None``: not offered."""
        return family_of(case).run(self, case, stages)

    def checked(self, case, prop: str) -> tuple[Any, list[Violation]]:
        """The example run with only the stages ``prop`` reads; when it violates ``prop``, run again
        with every stage, so the report (and its likely cause) sees everything the layer did — unless
        a stage ``prop`` does not read crashes that run: the violation found stays the report.
        Raises :class:`NotOffered` when the impl offers no layer of the case's family."""
        fam = family_of(case)
        stages = fam.stages_for([prop])
        ev = self._offered(fam, case, [prop], stages)
        found = fam.judge(ev, prop)
        if found and stages is not None and stages != fam.stages and not fam.did_not_complete(ev):
            full = fam.run(self, case)
            again = fam.judge(full, prop)
            if again and not fam.did_not_complete(full):
                return full, again
        return ev, found

    def judged(self, case, props: Sequence[str]) -> tuple[Any, dict[str, list[Violation]]]:
        """The example run once with every stage, judged on each of ``props``: ``(evidence, {prop:
        violations})`` (cheaper than one run per property, for a fixed list of cases)."""
        fam = family_of(case)
        ev = self._offered(fam, case, props)
        return ev, {prop: fam.judge(ev, prop) for prop in props}

    def _offered(self, fam: Family, case, props: Sequence[str], stages: Optional[Sequence[str]] = None):
        """``case`` run (the ``stages`` named; all by default), its case classes counted for ``props``
        (linear); :class:`NotOffered` when the impl offers no layer of the family."""
        if fam.name == "linear":
            for prop in props:
                self.coverage.setdefault(prop, set()).update(classes_of(case))
        ev = fam.run(self, case, stages)
        if ev is None:
            raise NotOffered(f"{self.impl_spec} offers no {fam.offered_by or fam.title} (optional)")
        return ev

    def check_all(self, case, props: Sequence[str]) -> None:
        """Run ``case`` once and raise one report naming every property of ``props`` it violates."""
        ev, found = self.judged(case, props)
        reports = [format_failure(ev, prop, vs, self.impl_spec) for prop, vs in found.items() if vs]
        if reports:
            raise AssertionError("\n\n".join(reports))

    def violations(self, case, prop: str) -> list[Violation]:
        try:
            return self.checked(case, prop)[1]
        except NotOffered:
            return []

    def check(self, case, prop: str) -> None:
        try:
            ev, found = self.checked(case, prop)
        except NotOffered as exc:
            import pytest

            pytest.skip(str(exc))
        if found:
            raise AssertionError(format_failure(ev, prop, found, self.impl_spec))


def coverage_lines(suite: Suite) -> list[str]:
    """Per linear property, the case classes it was judged on, of those the run's options allow."""
    wanted = applicable_classes(suite.world_sizes, suite._dtypes() or list(suite.dtypes))
    lines = []
    for prop, met in sorted(suite.coverage.items()):
        missing = sorted(wanted - met)
        lines.append(f"{prop}: {len(wanted & met)}/{len(wanted)} case classes"
                     + (f"; not met: {', '.join(missing)}" if missing else ""))
    return lines


def shell_word(arg: str) -> str:
    """``arg`` as one shell word on one line, whatever it holds: ``shlex.quote`` where every character
    is printable; else ANSI-C quoting (``$'...'``, bash/zsh/ksh), each other byte as ``\\xHH`` (a file
    name with a newline or with bytes that are not UTF-8 stays one pasteable line that runs nothing)."""
    if arg.isprintable():
        return shlex.quote(arg)
    out = []
    for ch in arg:
        if ch.isprintable() and ch not in "\\'":
            out.append(ch)
        elif ch in "\\'":
            out.append("\\" + ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
    return "$'" + "".join(out) + "'"


def replay_line(impl_spec: str, token: str, prop: Optional[str] = None) -> str:
    """The command that replays the case ``token`` against ``impl_spec``: every part one shell word."""
    cmd = f"python -m tpconform replay --impl={shell_word(impl_spec)} {shell_word(token)}"
    return cmd + (f" --property={shell_word(prop)}" if prop else "")


def replay_command(impl_spec: str, case, prop: Optional[str] = None) -> str:
    return replay_line(impl_spec, family_of(case).token(case), prop)


def format_failure(ev, prop: str, found: list[Violation], impl_spec: str, fam: Optional[Family] = None) -> str:
    fam = fam or family_of(ev.case)
    lines = [
        f"property violated: {prop.replace('_', ' ')}",
        f"case: {fam.describe(ev.case)}",
    ]
    for v in found[:8]:
        lines.append(f"  - {v.message}")
        cause = fam.likely_cause(ev, v)
        if cause:
            lines.append(f"    likely cause: {cause}")
    if len(found) > 8:
        lines.append(f"  ... and {len(found) - 8} more")
    lines += fam.report_notes(ev)
    lines.append(f"replay: {replay_command(impl_spec, ev.case, prop)}")
    return "\n".join(lines)
