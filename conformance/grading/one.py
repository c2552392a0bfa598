"""The verdict process for one submission: every property × variant, streamed as JSON lines.

Run in the verdict process (:mod:`tpconform.grading.verdict`, started by
:mod:`tpconform.grading.isolation`), in its own session, clean environment and private temp dir. Like the pytest plugin, this process never imports
candidate code: the submission runs only in the worker processes of its ``GroupPool``, and only
plain tensors come back. Records go to the file descriptor ``--result-fd`` (not inherited by the
workers), one JSON object a line, so a submission killed for its time limit keeps the cells it
finished:

- ``{"describe": {...}}`` — name, version, capabilities as the submission declares them;
- ``{"failure": {...}}`` — one distinct failure (a group of failed examples with one signature,
  :mod:`tpconform.grading.failures`), with its minimal example; cells name the groups they lost to;
- ``{"cell": {...}}`` — one property on one variant (schema in ``docs/GRADING.md``), in the scope
  ``contract`` (scored) or ``beyond`` (cases outside ``--contract``: reported, no points);
- ``{"unusable": "one line"}`` — it could not be loaded; ``{"done": true}`` — finished.

The grader decides the contract, not the submission: cases are drawn over every dtype of
``--dtypes`` whatever dtypes the submission declares (:class:`ContractSuite`); a narrower
declaration is recorded (``{"narrowed": ...}`` is folded into ``describe``) and its undeclared cases
are judged like any other.

When graded in the sandbox this process is the sandbox's PID 1 and makes itself non-dumpable
before any worker starts, so the candidate's processes (same user, no capabilities) can neither
ptrace it, read or write its memory, nor open its file descriptors through ``/proc``; a signal from
them can only end it (an init process ignores SIGKILL from its own namespace), which loses cells,
never forges them.

Per variant and scope, one derandomized Hypothesis run (``@seed``) draws the cases and checks every
property on each; a hang or a dead rank ends that variant (reported once, as the reason its
properties were not judged). Failed examples are grouped by signature (kind, property, case class,
likely cause); each group is then searched again with shrinking, from the same seed (the cases
already run are cached) and within :data:`SHRINK_SECONDS`, for its minimal failing example.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from hypothesis import HealthCheck, Phase, example, given, seed, settings
from tpconform.engine.runner import ImplUnusable
from tpconform.engine.suite import Suite, declared_limits, format_failure, replay_command
from tpconform.families.linear.case_classes import covering_cases
from tpconform.families.linear.strategy import anchor_cases, parallelism_cases
from tpconform.families.registry import families, family_of, primary
from tpconform.grading.catalog import variant_name
from tpconform.grading.contract import Contract, unique
from tpconform.grading.failures import (
    GRAD_PROPERTIES,
    MAX_GROUPS,
    Group,
    Groups,
    Signature,
    case_class,
    merge_repeats,
    raised_hint,
    signatures,
    upstream_grad_note,
)
from tpconform.spec.family import Family
from tpconform.spec.violations import Violation
from tpconform.transport import loopback, rank_walls
from tpconform.transport.contract import cut_text
from tpconform.transport.harness import DEFAULT_MEMORY_LIMIT, GroupFailure, GroupPool

SHRINK_SECONDS = 3.0  # the most one failure group's search for a smaller example may take


class ContractSuite(Suite):
    """A :class:`Suite` whose cases cover the assignment's dtypes, not only the declared ones; with a
    :class:`~tpconform.grading.contract.Contract`, non-divisible cases inside it are judged by the
    contract's rule, not by what the submission declares."""

    def __init__(self, *args, contract: Optional[Contract] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.contract = contract
        self.unmeasured: Optional[str] = None  # why the loopback's byte count is not available (None: it is)
        self.runner.judged_dtypes = tuple(self.dtypes)  # the conversion and mixed-precision stages too

    def _dtypes(self, family: Optional[str] = None) -> list[str]:
        return list(self.dtypes)  # the contract's, whatever the submission declares

    def narrowed(self) -> str | None:
        """What the declaration leaves out of the assignment (``None`` when nothing)."""
        missing = [d for d in self.dtypes if d not in self.capabilities.dtypes]
        parts = [f"declares dtypes {list(self.capabilities.dtypes)}; judged on {missing} as well"] if missing else []
        # what its capabilities leave out (forward-only, equal merged blocks, primitives not offered): 0 points
        parts += [f"not checked, as declared: {line}" for line in declared_limits(self)]
        return "; ".join(parts) or None

    def stage_dtypes(self, case) -> tuple[str, ...]:
        """The dtypes the conversion and mixed-precision stages of ``case`` choose from: the contract's
        inside it, the ``[beyond]`` ones too beyond it (a float32 assignment's cases run no 16-bit
        mixed-precision step; a bfloat16 case beyond it does, and what that step gets wrong is reported
        there, for no points)."""
        c = self.contract
        if c is None or not primary().claims(case) or c.contains(case):
            return tuple(self.dtypes)
        return tuple(dict.fromkeys([*self.dtypes, *c.beyond_dtypes]))

    def evidence(self, case, stages=None):
        self.runner.judged_dtypes = self.stage_dtypes(case)
        ev = super().evidence(case, stages)
        if (ev is not None and self.contract is not None and primary().claims(case) and case.uneven
                and self.contract.contains(case)):
            ev.uneven_shards_supported = not self.contract.raising_on_uneven_conforms
        return ev

    def expected_on_uneven(self, case) -> str:
        """What a non-divisible case expects of the layer, in words (every report of one says it)."""
        if self.contract is not None and self.contract.contains(case):
            if self.contract.raising_on_uneven_conforms:
                return ("expected (the contract: divisibility = uneven-may-raise): the dense result, or an exception "
                        "at construction on every rank")
            return "expected (the contract: divisibility = uneven): the dense result; raising is a failure"
        if self.capabilities.uneven_shards:
            return "expected (it declares uneven_shards=True): the dense result; raising is a failure"
        return ("expected (it declares uneven_shards=False): an exception at construction on every rank, or the dense "
                "result")


def crash_kind(crash: str | None) -> str | None:
    """``"hang"`` / ``"crash"`` for an example that could not complete, ``None`` otherwise.

    An exception the candidate raised is an ordinary wrong answer (``None``: the property fails).
    Read from the first line of the harness's message (a hang says "timed out", an exception "raised")."""
    if not crash:
        return None
    first = crash.splitlines()[0]
    if "timed out" in first:
        return "hang"
    if " raised" in first:
        return None
    return "crash"


def not_applicable(suite: Suite, variant, prop: str, fam: Optional[Family] = None) -> tuple[str, str] | None:
    """Why ``fam``'s ``prop`` on ``variant`` is not judged: ``("not-declared", why)`` (0 of its share) or
    ``("n/a", why)`` (no points either way), or ``None``. The same order for every family: a variant the
    impl does not declare; what no submission can be judged on here (``Family.not_applicable`` beyond
    its declaration: the maximum never depends on what one declares); then what its capabilities leave out."""
    fam = fam or primary()
    reason = fam.unsupported(suite, variant)
    if reason:
        return "not-declared", reason
    undeclared = fam.not_declared(suite, variant, prop)
    why = fam.not_applicable(suite, variant, prop)
    if why and why != undeclared:
        return "n/a", why
    return ("not-declared", undeclared) if undeclared else None


def _finite(x: float):
    return x if math.isfinite(x) else str(x)


def error_figures(found: list) -> list[dict]:
    out = []
    for v in found:
        m = v.mismatch
        row = {"rank": v.rank, "quantity": v.quantity, "message": v.message}
        if m is not None and m.total:
            row.update(max_abs_error=_finite(m.max_abs_error), max_rel_error=_finite(m.max_rel_error),
                       worst_index=list(m.index), got=_finite(m.actual), expected=_finite(m.expected),
                       tolerance=_finite(m.tolerance), elements_outside=m.bad, elements=m.total)
        out.append(row)
    return out


@dataclass
class Scope:
    """Where cases are drawn for one search: ``contract`` (scored) or ``beyond`` (reported, no points)."""

    name: str
    cases: Callable[[Any], Any]  # the strategy for a variant, or None: nothing to draw
    anchors: Callable[[Any], list]
    examples: int
    keep: Callable[[Any], bool] = lambda case: True  # a draw it skips (without running it) when False
    classify: Optional[Callable[[Any], Any]] = None  # the contract's case class of a case (cells count them)


class Grader:
    def __init__(self, impl: str, *, seed_value: int, examples: int, world_sizes, dtypes, timeout_s: float, emit,
                 shown_as: str | None = None, memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
                 contract: Optional[Contract] = None, private_network: bool = False):
        self.impl = shown_as or impl  # what failure reports and replay commands name
        self.seed = seed_value
        self.examples = examples
        self.contract = contract
        if contract is not None:
            world_sizes, dtypes = contract.world_sizes, contract.dtypes
        pool = GroupPool(timeout_s=timeout_s, memory_limit=memory_limit)
        self.suite = ContractSuite(impl, pool, world_sizes=world_sizes, dtypes=dtypes, contract=contract)
        # the parallelism check's byte count (verdict.really_tensor_parallel): only in the sandbox's
        # own network namespace, read here, in the verdict, never by the candidate's processes
        if private_network:
            self.suite.runner.traffic = loopback.private_counter()
            walls = rank_walls.unavailable()
            if self.suite.runner.traffic is None:
                self.suite.unmeasured = ("not available: the sandbox's network namespace has interfaces other "
                                         "than its own loopback, so its byte count is not the submission's alone")
            elif walls is not None:
                # files, Unix sockets, shared memory, another rank's memory: ways between the ranks the
                # loopback does not see, which only the kernel's walls shut
                self.suite.runner.traffic = None
                self.suite.unmeasured = (f"not available: the ranks cannot be walled apart here ({walls}), so "
                                         "they could exchange weights where the loopback's byte count does not see")
            else:
                pool.walls = True
        else:
            self.suite.unmeasured = ("not available: graded without the sandbox (--unsandboxed), where the "
                                     "loopback's byte count is shared with every process of the machine")
        self.emit = emit
        self.memo: dict[str, object] = {}
        self.found: dict[str, dict] = {}
        self.inside: dict[str, str] = {}  # signature key -> the id of its group inside the contract

    def evidence(self, case):
        """The example's evidence, run once per case however many properties read it (``None``: the impl
        offers no layer of the case's family)."""
        key = _key(case)
        if key not in self.memo:
            self.memo[key] = self.suite.evidence(case)
        return self.memo[key]

    def failures(self, case, props) -> dict[str, tuple[Signature, list, list]]:
        """Every signature ``case`` fails with, over ``props``: key -> (signature, properties, violations)."""
        key = _key(case)
        if key not in self.found:
            fam, ev = family_of(case), self.evidence(case)
            out: dict[str, tuple[Signature, list, list]] = {}
            if ev is not None and not crash_kind(fam.crash(ev)):
                for prop in props:
                    found = fam.judge(ev, prop)
                    if not found:
                        continue
                    for sig, covered in signatures(fam, ev, prop, found):
                        entry = out.setdefault(sig.key(), (sig, [], []))
                        if prop not in entry[1]:
                            entry[1].append(prop)
                        if sig.kind == "property" or not entry[2]:
                            entry[2].extend(covered)
            self.found[key] = merge_repeats(out)
        return self.found[key]

    def _settings(self, examples: int, shrink: bool) -> settings:
        return settings(max_examples=max(1, examples), database=None, deadline=None, derandomize=False,
                        report_multiple_bugs=False, suppress_health_check=list(HealthCheck), print_blob=False,
                        phases=(Phase.generate, Phase.shrink) if shrink else (Phase.explicit, Phase.generate))

    def scopes(self, fam: Optional[Family] = None) -> list[Scope]:
        """Where ``fam``'s cases are drawn (the primary family's when ``None``): the primary family's within
        the contract (its cases, anchors and case classes) and beyond it; every other family's from its own
        strategy, as many as ``pytest`` draws for it (``tpconform.pytest_plugin.testing.property_test``), after
        its anchors (``Family.anchors``)."""
        if fam is not None and fam is not primary():
            return [Scope("contract", lambda v: self.suite.cases(v, fam.name), lambda v: fam.anchors(self.suite, v),
                          max(3, round(self.examples * fam.example_share)))]
        c = self.contract
        if c is None:
            return [Scope("contract", self.suite.cases, self.fixed_cases, self.examples)]
        def anchors(v):
            return c.anchors(v, parallelism=self.suite.runner.traffic is not None)

        inside = Scope("contract", lambda v: c.cases(v) if str(v) in c.variants else None, anchors, self.examples,
                       classify=c.case_class)
        if not c.beyond_examples:
            return [inside]
        return [inside, Scope("beyond", c.beyond_cases, c.beyond_anchors, c.beyond_examples,
                              keep=lambda case: not c.contains(case))]

    def fixed_cases(self, variant) -> list:
        """Without a contract, the cases every search of ``variant`` meets first: the anchors, then the
        covering cases ``pytest`` runs for these world sizes and dtypes (non-divisible dims, fewer
        features than ranks, empty batches, every layout: ``tests/properties/test_case_classes.py``),
        judged as pytest judges them (by what the submission declares)."""
        sizes, dtypes = self.suite.world_sizes, self.suite._dtypes()
        return unique(anchor_cases(variant, sizes, dtypes) + self.parallelism_cases(variant, sizes, dtypes)
                      + covering_cases(variant, sizes, dtypes))

    def parallelism_cases(self, variant, sizes, dtypes) -> list:
        """Where the weight dwarfs the activations, so the loopback's byte count separates moving one from
        moving the other (``really_tensor_parallel``); only where that count is measured."""
        return parallelism_cases(variant, sizes, dtypes) if self.suite.runner.traffic is not None else []

    def run(self) -> None:
        try:
            description = self.suite.description
        except ImplUnusable as exc:
            self.emit({"unusable": str(exc)})
            return
        except GroupFailure as exc:
            self.emit({"unusable": f"loading it did not complete: {str(exc).splitlines()[0]}"})
            return
        self.emit({"describe": description})
        narrowed = self.suite.narrowed()
        if narrowed:
            self.emit({"narrowed": narrowed})
        for fam in self.graded_families():
            self.grade_family(fam)

    def graded_families(self) -> list[Family]:
        """The families this grade scores, in the registry's order: the primary one (the single layer)
        always, then the contract's, or every one (each scores only where the submission offers it)."""
        wanted = self.contract.families if self.contract is not None else tuple(families())
        return [fam for fam in families().values() if fam is primary() or fam.name in wanted]

    def grade_family(self, fam: Family) -> None:
        """Every cell of ``fam``, the same way for every family: per scope and variant one search
        (:meth:`grade_variant`: its cases, each run once and judged on every property, failures grouped by
        signature and each group shrunk for its minimal example)."""
        for scope in self.scopes(fam):
            for variant in fam.variants():
                self.grade_variant(variant, scope, fam)

    def grade_variant(self, variant, scope: Optional[Scope] = None, fam: Optional[Family] = None) -> None:
        """Every cell of ``fam``'s ``variant`` in ``scope`` (the primary family's first scope by default):
        one seeded search that runs each case once and judges it on every property that applies; failed
        examples grouped by signature, each group reported once with its minimal example."""
        fam = fam or primary()
        scope = scope or self.scopes(fam)[0]
        beyond = scope.name == "beyond"
        strategy = scope.cases(variant)
        props, cells = [], {}
        for prop in fam.properties:
            skip = not_applicable(self.suite, variant, prop, fam)
            if strategy is None and not beyond:
                skip = ("n/a", f"{variant} is not in the contract: checked beyond it (when declared), for no points")
            if skip:
                cells[prop] = {"verdict": skip[0], "reason": skip[1], "examples": 0}
            else:
                props.append(prop)
        if beyond and (strategy is None or not props):
            return  # nothing beyond the contract here (or not declared): no cells
        index = list(map(str, fam.variants())).index(str(variant)) + 1
        groups = Groups(scope.name, variant_name(fam.name, variant, primary().name),
                        variant_name(fam.name, f"{'B' if beyond else 'F'}{index}.", primary().name))
        state: dict = {"examples": 0, "crash": None, "counted": set(), "classes": set(), "offered": True,
                       "error": None}

        def explore(case):
            if state["crash"] or not state["offered"] or not scope.keep(case):
                return
            state["examples"] += 1
            if scope.classify is not None:
                state["classes"].add(scope.classify(case))
            ev = self.evidence(case)
            if ev is None:
                state["offered"] = False
                return
            kind = crash_kind(fam.crash(ev))
            if kind:
                state["crash"] = (kind, ev)
                return
            for sig, props_hit, _ in self.failures(case, props).values():
                for prop in props_hit:
                    groups.add(sig, case, prop, state["counted"])

        if props and strategy is not None:
            # the anchor cases first (divisible dims, a bias, a non-empty batch, a transposed layout, and
            # under a contract each of its world sizes x bias x input ranks), so no grade depends on what
            # the random draws hit
            search = given(case=strategy)(explore)
            for anchor in reversed(scope.anchors(variant)):
                search = example(case=anchor)(search)
            try:
                self._settings(scope.examples, shrink=False)(seed(self.seed)(search))()
            except Exception as exc:  # noqa: BLE001 - anything else ends the search: never a pass
                state["error"] = cut_text(f"the search could not judge it: {type(exc).__name__}: {exc}")
        if state["error"] is not None or not state["offered"]:
            for prop in props:
                cells[prop] = self._unjudged(fam, state)
        else:
            crash_group, reported = self._report_all(groups, state["crash"], strategy, scope, variant, props)
            for prop in props:
                cells[prop] = self._cell(prop, state, crash_group, groups.for_property(prop), reported,
                                         prop in groups.overflow)
        for prop in fam.properties:
            cell = {"property": prop, "variant": groups.variant, **cells[prop]}
            if beyond:
                cell["scope"] = "beyond"
            self.emit({"cell": cell})

    def _unjudged(self, fam: Family, state: dict) -> dict:
        """The cell of a search that judged nothing: not offered (no points either way) or an error of the
        search itself (a "crash", never a pass)."""
        if state["error"] is not None:
            return {"verdict": "crash", "reason": state["error"], "examples": state["examples"]}
        return {"verdict": "n/a", "reason": f"not offered ({fam.offered_by or fam.title}): no points either way",
                "examples": state["examples"]}

    def _report_all(self, groups: Groups, crash, strategy, scope: Scope, variant, props) -> tuple[Optional[dict], dict]:
        """Emit one ``failure`` record per distinct failure of this variant and scope (the crash that
        ended it, if any, then each group); beyond the contract, one already reported inside it is
        not reported again. Returns (the crash's record or ``None``, {group id: its record})."""
        crash_group = None
        if crash:
            kind, ev = crash
            crash_group = self._crash_group(kind, ev, scope, groups, props)
            same = self.inside.get(crash_group["key"]) if scope.name == "beyond" else None
            if same:  # the crash already reported inside the contract
                crash_group.update(id=same, summary=f"the same {kind} as inside the contract ({same})")
            else:
                self._emit_failure(crash_group, scope)
        reported = {}
        for g in groups:
            same = self.inside.get(g.signature.key()) if scope.name == "beyond" else None
            if same:  # the same failure as inside the contract: reported there, not again
                reported[g.id] = {"id": same, "summary": f"the same failure as inside the contract ({same})",
                                  "cause": g.signature.cause, "failure": None, "minimal_example": None, "errors": []}
                continue
            reported[g.id] = self._report(g, strategy, scope, props)
            self._emit_failure(reported[g.id], scope)
        return crash_group, reported

    def _emit_failure(self, rec: dict, scope: Scope) -> None:
        if scope.name == "contract":
            self.inside.setdefault(rec["key"], rec["id"])
        self.emit({"failure": {k: v for k, v in rec.items() if k != "key"}})

    def _cell(self, prop: str, state: dict, crash_group, hit: list[Group], reported: dict, overflow: bool) -> dict:
        cell: dict = {"examples": state["examples"]}
        if state["classes"] and self.contract is not None:  # how many of the contract's case classes it met
            cell["classes"] = [len(state["classes"] & self.contract.case_classes()), len(self.contract.case_classes())]
        if crash_group is not None:
            first = crash_group["summary"]
            cell.update(verdict=crash_group["kind"], failures=[crash_group["id"]],
                        reason=f"not judged: this variant's examples stopped at a {crash_group['kind']} (reported "
                               f"once, {crash_group['id']}): {first}",
                        minimal_example=crash_group["minimal_example"])
            return cell
        if not hit and overflow:
            cell.update(verdict="fail", reason=f"failed in more distinct ways than the report lists ({MAX_GROUPS} a "
                                               "variant)")
            return cell
        if not hit:
            cell.update(verdict="pass", reason=None)
            return cell
        own = [g for g in hit if g.signature.kind == "property"] or hit
        first = reported[own[0].id]
        if own[0].signature.kind == "property":
            reason = first["summary"]
        else:
            what = "the layer raised" if own[0].signature.kind == "raised" else "the output has the wrong shape"
            reason = f"not judged on {own[0].examples} example(s): {what} (reported once, {own[0].id}): {first['cause']}"
        cell.update(verdict="fail", reason=reason, failures=list(dict.fromkeys(reported[g.id]["id"] for g in hit)),
                    errors=first["errors"])
        if first["failure"]:
            cell.update(failure=first["failure"], minimal_example=first["minimal_example"])
        return cell

    def _crash_group(self, kind: str, ev, scope: Scope, groups: Groups, props) -> dict:
        fam = family_of(ev.case)
        text = fam.crash(ev) or ""
        return {"id": f"{groups.prefix}0", "kind": kind,
                "scope": scope.name, "variant": groups.variant, "property": "*", "properties": list(props),
                "case_class": case_class(ev.case), "cause": _crash_cause(fam, ev, kind), "summary": text.splitlines()[0],
                "examples": 1, "failure": f"case: {fam.describe(ev.case)}\n{text}\nreplay: "
                                          f"{replay_command(self.impl, ev.case)}",
                "minimal_example": self._example(ev.case, None, shrunk=False), "errors": [],
                "beyond_why": self._beyond_why(ev.case, scope),
                "key": Signature(kind, "*", case_class(ev.case), _crash_cause(fam, ev, kind)).key()}

    def _beyond_why(self, case, scope: Scope) -> Optional[str]:
        if scope.name != "beyond" or self.contract is None:
            return None
        return "outside the contract: " + ", ".join(self.contract.outside(case))

    def _report(self, g: Group, strategy, scope: Scope, props) -> dict:
        """The group's record: its minimal example (searched again with shrinking, from the same seed,
        for the smallest case with the same signature), the failure text and the error figures."""
        case, shrunk = self.shrink(g, strategy, scope, props)
        sig, g_props, found = self.failures(case, props).get(g.signature.key()) or self.failures(g.first_case,
                                                                                               props)[g.signature.key()]
        ev, fam = self.evidence(case), family_of(case)
        prop = sig.property if sig.kind == "property" else None
        if sig.kind == "property":
            text = format_failure(ev, sig.property, found, self.impl, fam)
        else:
            title = "the layer raised" if sig.kind == "raised" else "the output has the wrong shape"
            messages = [self._contract_wording(v.message, ev.case) for v in found[:4]]
            text = (f"{title}: {sig.cause}\ncase: {fam.describe(ev.case)}\n"
                    + "\n".join(f"  - {m}" for m in messages)
                    + f"\nproperties it left unjudged on this case: {', '.join(g.properties)}"
                    + f"\nreplay: {replay_command(self.impl, case)}")
        hint = raised_hint(fam, ev, found, g.on_a_full_batch) if sig.kind == "raised" else None
        notes = [f"likely cause: {hint}"] if hint else []
        if getattr(ev.case, "uneven", False):
            notes.append(self.suite.expected_on_uneven(ev.case))
        if sig.kind == "shape" or prop in GRAD_PROPERTIES or prop == "training_step_matches_the_dense_layer":
            notes += [note for note in [upstream_grad_note(ev)] if note]
        if notes:
            text += "\n" + "\n".join(notes)
        summary = sig.cause if sig.kind != "property" else (found[0].message.splitlines()[0] if found else sig.cause)
        return {"id": g.id, "kind": sig.kind, "scope": g.scope, "variant": g.variant, "property": sig.property,
                "properties": list(g.properties), "case_class": sig.case_class, "cause": sig.cause,
                "summary": summary, "examples": g.examples, "failure": text, "hint": hint,
                "minimal_example": self._example(case, prop, shrunk=shrunk), "errors": error_figures(found),
                "beyond_why": self._beyond_why(case, scope), "key": g.signature.key()}

    def _contract_wording(self, message: str, case) -> str:
        """A construction error's message names the rule that applied: the contract's, where it decides."""
        if self.contract is not None and primary().claims(case) and case.uneven and self.contract.contains(case):
            return message.replace("it declares uneven_shards=True",
                                   "the contract requires dims the world size does not divide to work "
                                   "(divisibility = uneven)")
        return message

    def shrink(self, g: Group, strategy, scope: Scope, props) -> tuple[Any, bool]:
        """The smallest case with ``g``'s signature that a shrinking search from the same seed finds
        within :data:`SHRINK_SECONDS` (``g``'s first case when it finds none)."""
        target = g.signature.key()
        last: list = []
        deadline = time.monotonic() + SHRINK_SECONDS

        @self._settings(scope.examples, shrink=True)
        @seed(self.seed)
        @given(case=strategy)
        def search(case):
            if time.monotonic() > deadline or not scope.keep(case):
                return
            ev = self.evidence(case)
            if ev is None or crash_kind(family_of(case).crash(ev)):
                return  # shrink towards this failure, not towards a hang
            if target in self.failures(case, props):
                last[:] = [case]
                raise AssertionError(target)

        try:
            search()
        except Exception:  # noqa: BLE001, S110 - the failure searched for, or Hypothesis's report of a flaky one
            pass
        return (last[0], True) if last else (g.first_case, False)

    def _example(self, case, prop: str | None, *, shrunk: bool) -> dict:
        fam = family_of(case)
        return {"token": fam.token(case), "description": fam.describe(case), "shrunk": shrunk,
                "replay": replay_command(self.impl, case, prop)}


def _crash_cause(fam: Family, ev, kind: str) -> str:
    crash = fam.crash(ev) or ""
    cause = fam.cause_of(ev, Violation("*", crash, None, "run"))
    if cause:
        return cause
    return "an example did not finish in time" if kind == "hang" else crash.splitlines()[0][:200]


def _key(case) -> str:
    """A case's key in the grader's caches, unique over every family (its replay token)."""
    return family_of(case).token(case)
