"""The suite as property tests use it: run a case of any family for the impl under test, judge one
property, and raise an ``AssertionError`` that reads as a complete failure report."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, NoReturn, Optional, Sequence

from tpconform.engine.coverage import Coverage
from tpconform.engine.report import (  # noqa: F401 - format_failure, replay_command, replay_line: imported from here
    PropertyViolated,
    format_case_failure,
    format_failure,
    replay_command,
    replay_line,
    shell_word,
)
from tpconform.engine.runner import Runner
from tpconform.families.registry import families, family, family_of, primary
from tpconform.impls.protocol import Capabilities
from tpconform.spec.dtypes import DTYPES
from tpconform.spec.family import Family
from tpconform.spec.violations import Violation
from tpconform.transport.contract import Pool
from tpconform.transport.harness import GroupPool


class NotOffered(Exception):
    """The impl offers none of a family's (optional) layers; the message is the skip line."""


class NotDeclared(NotOffered):
    """The impl's capabilities leave the property (or the case's variant) unchecked: a forward-only
    layer's gradient properties, a primitive it does not offer (``Family.not_declared``). Never a pass."""


Explained = Callable[[str, Any, list[Violation]], bool]  # (property, case, its violations) -> all expected?


class Suite:
    def __init__(self, impl_spec: str, pool: Optional[GroupPool] = None, *,
                 world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
        self.impl_spec = impl_spec
        self.world_sizes = tuple(world_sizes)
        self.runner = Runner(impl_spec, pool, describe_world_size=min(self.world_sizes, default=1))  # no group the run does not use
        self.dtypes = tuple(dtypes)
        self.examples = 0
        self._strategies: dict = {}
        self.coverage = Coverage()  # the case classes and their pairs each property met (Family.case_classes)

    # -- the run's options and the impl's declaration ---------------------------------------------
    def _dtypes(self, family: Optional[str] = None) -> list[str]:
        """The run's dtypes that family ``family`` (the primary one when ``None``) is declared for."""
        return [d for d in self.dtypes if d in self.capabilities.of(family or primary().name).dtypes]

    def unsupported(self, variant: Any) -> Optional[str]:
        """Why the impl does not declare the primary family's ``variant`` (``None`` when it does)."""
        return primary().unsupported(self, variant)

    def start_groups(self) -> None:
        """Start the process groups of every world size of the run in the background, with the impl loaded
        (``Runner.start_groups``): the first examples of each world size then find them up."""
        self.runner.start_groups(self.world_sizes)

    @property
    def pool(self) -> Pool:
        return self.runner.pool

    @property
    def description(self) -> dict:
        return self.runner.describe()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities.from_dict(self.description["capabilities"])

    def cases(self, variant: Any, family_name: Optional[str] = None):
        """The Hypothesis strategy of ``family_name``'s cases (the primary family's when ``None``) for
        ``variant`` within this run's options (built once: Hypothesis works out a new strategy's properties
        on first use, at a cost per example)."""
        family_name = family_name or primary().name
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
        self._declared(fam, case, [prop])
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
        self._declared(fam, case, props)
        ev = self._offered(fam, case, props)
        return ev, {prop: fam.judge(ev, prop) for prop in props}

    def _declared(self, fam: Family, case, props: Sequence[str]) -> None:
        """:class:`NotDeclared` when the impl's capabilities leave one of ``props`` on ``case`` unchecked."""
        for prop in props:
            why = fam.not_declared(self, fam.variant_of(case), prop)
            if why:
                raise NotDeclared(why)

    def _offered(self, fam: Family, case, props: Sequence[str], stages: Optional[Sequence[str]] = None):
        """``case`` run (the ``stages`` named; all by default), its case classes and their pairs counted
        for ``props`` (a family that says its classes); :class:`NotOffered` when the impl offers no layer of the family."""
        self.coverage.count(fam, case, props)
        ev = fam.run(self, case, stages)
        if ev is None:
            raise NotOffered(f"{self.impl_spec} offers no {fam.offered_by or fam.title} (optional)")
        return ev

    def check_all(self, case, props: Sequence[str], explained: Optional[Explained] = None) -> None:
        """Run ``case`` once and raise one report naming every property of ``props`` it violates
        (``explained``: as in :meth:`check`, asked once per property)."""
        try:
            ev, found = self.judged(case, props)
        except NotOffered as exc:
            _skip(exc)
        unexplained = {prop: vs for prop, vs in found.items() if vs and not _accepted(explained, prop, case, vs)}
        if unexplained:
            raise PropertyViolated(format_case_failure(ev, unexplained, self.impl_spec))

    def violations(self, case, prop: str) -> list[Violation]:
        """``prop``'s violations in ``case`` (``[]`` also when the impl does not offer its family: for
        searches that only ask "does this case fail?"; a test goes through :meth:`check`, which skips)."""
        try:
            return self.checked(case, prop)[1]
        except NotOffered:
            return []

    def check(self, case, prop: str, explained: Optional[Explained] = None) -> None:
        """Judge ``case`` on ``prop``: an ``AssertionError`` that reads as the failure report when it is
        violated, a pytest skip when the impl does not offer the case's family (never a pass).

        ``explained(prop, case, violations)`` (the known failures, ``engine/known_failures.py``) is
        asked about every example judged, with its violations or none, and returns whether each of
        them is an expected one: then the example passes and the search goes on to the next."""
        try:
            ev, found = self.checked(case, prop)
        except NotOffered as exc:
            _skip(exc)
        if not _accepted(explained, prop, case, found):
            raise PropertyViolated(format_failure(ev, prop, found, self.impl_spec))


def _accepted(explained: Optional[Explained], prop: str, case, found: list[Violation]) -> bool:
    return explained(prop, case, found) if explained is not None else not found


def _skip(exc: NotOffered) -> NoReturn:
    import pytest

    pytest.skip(str(exc))


def declared_limits(suite: Suite) -> list[str]:
    """What the impl's capabilities leave unchecked, one line per family and reason (``Family.declared_limits``:
    a forward-only family's gradient properties, equal merged blocks only, primitives not offered)."""
    return [line for fam in families().values() for line in fam.declared_limits(suite)]


def coverage_lines(suite: Suite) -> list[str]:
    """Per property of a family that says its case classes, the case classes and pairs of classes it was judged on (``Coverage.lines``)."""
    return suite.coverage.lines(suite.world_sizes, suite._dtypes() or list(suite.dtypes))
