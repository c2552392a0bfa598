"""A family of layers: what the engine needs to run, judge, report and replay any of them.

A family is one folder under ``conformance/families/`` whose ``family.py`` defines ``FAMILY``, an
instance of a :class:`Family` subclass. It brings:

- its **case type** (``case.py``, at the bottom: plain data, a one-line token, a description);
- its **properties** (:class:`Property`: a function of one example's evidence, returning
  :class:`~tpconform.spec.violations.Violation` s, and the worker stages it reads);
- how one example **runs** (:meth:`Family.run`: the tensors, the dense truth, the worker command,
  which the family's ``worker.py`` registers with the transport) and what it can **diagnose**
  (:meth:`Family.likely_cause`);
- its **cases** (:meth:`Family.cases`, a Hypothesis strategy per variant, built from ``strategies/``).

The engine (:mod:`tpconform.engine.suite`) does the rest the same way for every family: one test
per property and variant, stage pruning, the failure report with likely causes and a replay command
(``python -m tpconform replay``), example-level known failures, grading and the differential mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from tpconform.spec.violations import Violation


@dataclass(frozen=True)
class Property:
    """One line of a family's spec: ``judge(evidence)`` lists how an example violates it."""

    name: str
    judge: Callable[[Any], list[Violation]]
    stages: tuple[str, ...] = ()  # the worker stages whose results it reads (families with stages)
    # Its evidence is a fact measured inside the candidate's own process (an in-place flag, a count of
    # collectives): the candidate can forge it, so it is reported and worth 0 points in grading, whatever
    # a weights file says (tpconform.grading.scoring; tests/selftest/test_self_reported.py walks every family).
    self_reported: bool = False
    # It judges what a backward pass left (grads, a training step, a backward's collectives): not checked
    # for a family declared forward-only (capability ``backward=False``: :meth:`Family.not_declared`).
    reads_backward: bool = False

    @property
    def doc(self) -> str:
        return (self.judge.__doc__ or self.name.replace("_", " ")).strip().split("\n\n")[0]


@dataclass(frozen=True)
class CaseClasses:
    """A family's case classes (the kinds of case a bug can hide in: a non-divisible dim, an empty batch, a
    transposed input...), which the engine counts per property (``engine/coverage.py``): the family says
    what a case meets and what a run can meet; the engine counts what each property met."""

    of: Callable[[Any], set[str]]  # the classes a case belongs to
    pairs_of: Callable[[Any], set[tuple[str, str]]]  # the pairs of classes it meets
    # the classes and the pairs a run over (world sizes, dtypes, variant names) can meet
    applicable: Callable[[Sequence[int], Sequence[str], Sequence[str]], set[str]]
    applicable_pairs: Callable[[Sequence[int], Sequence[str], Sequence[str]], set[tuple[str, str]]]


class Family:
    """The base of every family; a family overrides what differs (see the module doc)."""

    name: str = ""  # the folder's name; prefixes the replay token of its cases ("name:token")
    title: str = ""  # one line for reports: "the four collective primitives"
    case_type: type = object
    offered_by: str = ""  # the impl's optional method that builds the family's layers ("": always offered)
    properties: dict[str, Property] = {}
    stages: tuple[str, ...] = ()  # every worker stage a full example runs (() : the family has none)
    example_share: float = 1.0  # of the profile's examples per test (a family whose examples cost a lot: less)
    derived_facts: tuple[str, ...] = ()  # what facts() adds to the case's fields, for known-failure ``when``s
    # Where the family sorts among the families (then by name; ``families/registry.py``): the first is the
    # primary one, whose variants and replay tokens go bare, and which is checked when none is named.
    order: int = 100
    # Its case classes and their pairs, counted per property (``engine/coverage.py``, the run's summary);
    # ``None``: not counted.
    case_classes: Optional[CaseClasses] = None
    # The test module its property tests are made in (``tests/properties/test_<module>.py``; a family whose
    # tests are spread over several modules says per property: :meth:`test_module`).
    module: str = "families"

    # -- what is checked -----------------------------------------------------------------------
    def variants(self) -> Sequence[Any]:
        """The values one test is parametrized over (each a str()-able variant of the layers)."""
        return (None,)

    def variant_of(self, case) -> str:
        """The variant a case belongs to, as known-failure entries name it (``"*"``-matchable)."""
        return "*"

    def claims(self, case) -> bool:
        """Whether ``case`` is one of this family's (a family sharing another's case type says which)."""
        return type(case) is self.case_type

    def unsupported(self, suite, variant) -> Optional[str]:
        """Why the impl does not declare ``variant`` at all (every property on it skipped), or ``None``."""
        return None

    def not_applicable(self, suite, variant, prop: str) -> Optional[str]:
        """Why ``prop`` on ``variant`` cannot be checked for the impl under test (a skip line)."""
        return None

    def not_declared(self, suite, variant, prop: str) -> Optional[str]:
        """Why ``prop`` on ``variant`` is outside what the impl declares for this family (its capabilities,
        ``suite.capabilities.of(name)``), or ``None``: a skip line in pytest, 0 points in grading (never
        a pass). Here: a property that reads a backward pass, for a family declared forward-only."""
        caps = suite.capabilities.of(self.name)
        if not caps.backward and self.properties[prop].reads_backward:
            return (f"{suite.impl_spec} declares its {self.name} layers forward-only (capability backward=False): "
                    f"{prop} reads a backward pass, not checked")
        return None

    def declared_limits(self, suite) -> list[str]:
        """One line per thing the impl's declaration leaves unchecked in this family (the report header)."""
        caps = suite.capabilities.of(self.name)
        if caps.backward:
            return []
        skipped = [p for p, prop in self.properties.items() if prop.reads_backward]
        return [f"{self.name}: forward-only (backward=False): {len(skipped)} of its {len(self.properties)} properties "
                f"read a backward pass, not checked: {', '.join(skipped)}"] if skipped else []

    def cases(self, suite, variant):
        """The Hypothesis strategy of this family's cases for ``variant`` within the run's options."""
        raise NotImplementedError

    def anchors(self, suite, variant) -> list:
        """Fixed cases of ``variant`` within the run's options that every search meets before its random
        draws (a grade's, and ``tests/properties/test_anchors.py`` in ``pytest``): the configs where this
        family's bugs live that a handful of random draws can miss (``[]``: none)."""
        return []

    # -- one example ---------------------------------------------------------------------------
    def run(self, suite, case, stages: Optional[Sequence[str]] = None):
        """Run ``case`` for the suite's impl; its evidence, or ``None`` when the impl does not offer
        the family's layers (``offered_by`` returned ``None``)."""
        raise NotImplementedError

    def judge(self, ev, prop: str) -> list[Violation]:
        """How the example violates ``prop`` (its preconditions first: a crash, a construction error)."""
        raise NotImplementedError

    def crash(self, ev) -> Optional[str]:
        """Why the example did not complete (a crash, a hang, a raise; its first line says which), or ``None``."""
        return getattr(ev, "crash", None) or None

    def did_not_complete(self, ev) -> bool:
        """Whether the example crashed or hung (a re-run with every stage would only repeat it)."""
        return bool(self.crash(ev))

    def likely_cause(self, ev, v: Violation) -> Optional[str]:
        return None

    def cause_of(self, ev, v: Violation) -> Optional[str]:
        """:meth:`likely_cause`, as reports and grades ask it: a guess at the bug class, so an error inside the
        guess (a symptom its tests did not foresee) costs the guess alone, never the failure it explains
        (the self-tests call :meth:`likely_cause` itself, where such an error fails them)."""
        try:
            return self.likely_cause(ev, v)
        except Exception:  # noqa: BLE001 - any error of the diagnosis: no cause named
            return None

    def report_notes(self, ev) -> list[str]:
        """Lines a failure report adds about how the example was judged (e.g. a declared finalisation)."""
        return []

    def stages_for(self, props: Sequence[str]) -> Optional[tuple[str, ...]]:
        """The stages ``props`` read, in run order (``None``: the family runs every example whole)."""
        if not self.stages:
            return None
        wanted = {s for p in props for s in self.properties[p].stages}
        return tuple(s for s in self.stages if s in wanted)

    # -- naming a case ----------------------------------------------------------------------------
    def describe(self, case) -> str:
        return case.describe()

    def token(self, case) -> str:
        """The case as one replayable token: ``family:fields``."""
        return f"{self.name}:{case.token()}"

    def read_token(self, text: str):
        return self.case_type.from_token(text)  # type: ignore[attr-defined]

    def facts(self, case) -> dict[str, Any]:
        """What known-failure ``when`` conditions can test: the case's fields plus derived ones."""
        facts = {k: tuple(v) if isinstance(v, list) else v for k, v in case.as_dict().items()}
        facts["variant"] = self.variant_of(case)
        return facts

    def test_name(self, prop: str) -> str:
        """The pytest function that checks ``prop`` (tests/properties)."""
        return f"test_{prop}"

    def test_module(self, prop: str) -> str:
        """The test module (``tests/properties/test_<module>.py``) that holds ``prop``'s test."""
        return self.module
