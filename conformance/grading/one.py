"""The verdict process for one submission: every property × variant, streamed as JSON lines.

Run by :mod:`conformance.grading.isolation` as ``python -m conformance.grading.one``, in its own
session, clean environment and private temp dir. Like the pytest plugin, this process never imports
candidate code: the submission runs only in the worker processes of its ``GroupPool``, and only
plain tensors come back. Records go to the file descriptor ``--result-fd`` (not inherited by the
workers), one JSON object a line, so a submission killed for its time limit keeps the cells it
finished:

- ``{"describe": {...}}`` — name, version, capabilities as the submission declares them;
- ``{"cell": {...}}`` — one property on one variant (schema in ``docs/GRADING.md``);
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

Per variant, one derandomized Hypothesis run (``@seed``) draws the cases and checks every property
on each; a hang or a dead rank ends that variant (every property of it is marked). Each property
that failed is then searched again with shrinking, from the same seed (the cases already run are
cached), for its minimal failing example.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from hypothesis import HealthCheck, Phase, example, given, seed, settings

from conformance.engine.runner import ImplUnusable
from conformance.engine.suite import Suite, format_failure, replay_command
from conformance.families.linear import properties
from conformance.grading import records
from conformance.transport.harness import DEFAULT_MEMORY_LIMIT, GroupFailure, GroupPool
from strategies import VARIANTS
from strategies.layers import anchor_cases

PROPERTIES = tuple(properties.SPEC)


class ContractSuite(Suite):
    """A :class:`Suite` whose cases cover the assignment's dtypes, not only the declared ones."""

    def _dtypes(self) -> list[str]:
        return list(self.dtypes)

    def narrowed(self) -> str | None:
        """What the declaration leaves out of the assignment (``None`` when nothing)."""
        missing = [d for d in self.dtypes if d not in self.capabilities.dtypes]
        return f"declares dtypes {list(self.capabilities.dtypes)}; judged on {missing} as well" if missing else None


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


def not_applicable(suite: Suite, variant, prop: str) -> tuple[str, str] | None:
    reason = suite.unsupported(variant)
    if reason:
        return "not-declared", reason
    if prop == "ranks_agree_on_the_output" and str(variant) == "column-sharded-output":
        return "n/a", "a sharded column output is not replicated: nothing to agree on"
    return None


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


class Grader:
    def __init__(self, impl: str, *, seed_value: int, examples: int, world_sizes, dtypes, timeout_s: float, emit,
                 shown_as: str | None = None, memory_limit: int | None = DEFAULT_MEMORY_LIMIT):
        self.impl = shown_as or impl  # what failure reports and replay commands name
        self.seed = seed_value
        self.examples = examples
        self.suite = ContractSuite(impl, GroupPool(timeout_s=timeout_s, memory_limit=memory_limit),
                                   world_sizes=world_sizes, dtypes=dtypes)
        self.emit = emit
        self.memo: dict[str, object] = {}

    def evidence(self, case):
        """The example's evidence, run once per case however many properties read it."""
        key = case.token()
        if key not in self.memo:
            self.memo[key] = self.suite.evidence(case)
        return self.memo[key]

    def violations(self, case, prop: str) -> tuple[list, object]:
        """(violations, evidence); cases the suite runs its own way (sub-groups) are not cached."""
        if getattr(case, "tp_groups", 1) > 1:
            return self.suite.violations(case, prop), None
        ev = self.evidence(case)
        return properties.evaluate(ev, prop), ev

    def _settings(self, shrink: bool) -> settings:
        return settings(max_examples=self.examples, database=None, deadline=None, derandomize=False,
                        report_multiple_bugs=False, suppress_health_check=list(HealthCheck), print_blob=False,
                        phases=(Phase.generate, Phase.shrink) if shrink else (Phase.explicit, Phase.generate))

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
        for variant in VARIANTS:
            self.grade_variant(variant)

    def grade_variant(self, variant) -> None:
        props, cells = [], {}
        for prop in PROPERTIES:
            skip = not_applicable(self.suite, variant, prop)
            if skip:
                cells[prop] = {"verdict": skip[0], "reason": skip[1], "examples": 0}
            else:
                props.append(prop)
        first_failure: dict[str, object] = {}
        state: dict = {"examples": 0, "crash": None}

        def explore(case):
            if state["crash"]:
                return
            state["examples"] += 1
            for prop in props:
                found, ev = self.violations(case, prop)
                kind = crash_kind(ev.outcome.crash) if ev is not None else None
                if kind:
                    state["crash"] = (kind, ev)
                    return
                if found and prop not in first_failure:
                    first_failure[prop] = case

        if props:
            # the anchor cases first (strategies.layers.anchor_cases: divisible dims, a bias, a
            # non-empty batch, a transposed layout), so no grade depends on what the random draws hit
            search = given(case=self.suite.cases(variant))(explore)
            for anchor in reversed(anchor_cases(variant, self.suite.world_sizes, self.suite._dtypes())):
                search = example(case=anchor)(search)
            self._settings(shrink=False)(seed(self.seed)(search))()
        for prop in props:
            cell = {"examples": state["examples"]}
            if state["crash"]:
                kind, ev = state["crash"]
                cell.update(verdict=kind, reason=ev.outcome.crash.splitlines()[0], failure=ev.outcome.crash,
                            minimal_example=self._example(ev.case, prop, shrunk=False))
            elif prop in first_failure:
                cell.update(self.shrink(variant, prop, first_failure[prop]))
            else:
                cell.update(verdict="pass", reason=None)
            cells[prop] = cell
        for prop in PROPERTIES:
            self.emit({"cell": {"property": prop, "variant": str(variant), **cells[prop]}})

    def shrink(self, variant, prop: str, unshrunk) -> dict:
        last: list = []

        @self._settings(shrink=True)
        @seed(self.seed)
        @given(case=self.suite.cases(variant))
        def search(case):
            found, ev = self.violations(case, prop)
            if ev is not None and crash_kind(ev.outcome.crash):
                return  # shrink towards the property's failure, not towards a hang
            if found:
                last[:] = [case, found, ev]
                raise AssertionError(prop)

        try:
            search()
        except Exception:  # noqa: BLE001, S110 - the failure searched for, or Hypothesis's report of a flaky one
            pass
        shrunk = bool(last)
        case, found, ev = last if last else (unshrunk, *self.violations(unshrunk, prop))
        if not found:  # a failure that did not come back (a non-deterministic candidate)
            return {"verdict": "fail", "reason": "it failed once on this case, then passed on it",
                    "minimal_example": self._example(unshrunk, prop, shrunk=False), "errors": []}
        text = (format_failure(ev, prop, found, self.impl) if ev is not None
                else "\n".join(v.message for v in found) + f"\nreplay: {replay_command(self.impl, case, prop)}")
        return {"verdict": "fail", "reason": found[0].message.splitlines()[0], "failure": text,
                "minimal_example": self._example(case, prop, shrunk=shrunk), "errors": error_figures(found)}

    def _example(self, case, prop: str, *, shrunk: bool) -> dict:
        return {"token": case.token(), "description": case.describe(), "shrunk": shrunk,
                "replay": replay_command(self.impl, case, prop)}


def _harden() -> None:
    """Before any worker exists: no submission folder on ``sys.path`` (``-P`` already keeps the
    working directory off it), not dumpable (no ptrace, no ``/proc/PID/mem``/``fd`` for the
    candidate's processes), SIGINT ignored (the grader ends this process by SIGKILL)."""
    import ctypes
    import signal

    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.grading.one")
    p.add_argument("--impl", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--examples", type=int, required=True)
    p.add_argument("--world-sizes", required=True)
    p.add_argument("--dtypes", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--result-fd", type=int, required=True)
    p.add_argument("--shown-as", default=None, help="the impl spec that replay commands name")
    p.add_argument("--limit-seconds", type=float, default=None)
    p.add_argument("--limit-memory-mb", type=int, default=None)
    p.add_argument("--limit-file-mb", type=int, default=None)
    a = p.parse_args(argv)
    _harden()
    if a.limit_seconds is not None:
        from conformance.grading.isolation import Limits

        Limits(a.limit_seconds, a.limit_memory_mb, a.limit_file_mb).apply()
    from conformance.pytest_plugin.plugin import parse_world_sizes

    out = os.fdopen(a.result_fd, "w", buffering=1)

    def emit(record: dict) -> None:
        if "cell" in record:  # cut candidate text here already: the grader checks and cuts again
            record = {"cell": records.cell(record["cell"])}
        out.write(json.dumps(record) + "\n")

    grader = Grader(a.impl, seed_value=a.seed, examples=a.examples, world_sizes=parse_world_sizes(a.world_sizes),
                    dtypes=a.dtypes.split(","), timeout_s=a.timeout, emit=emit, shown_as=a.shown_as,
                    memory_limit=a.limit_memory_mb * 2**20 if a.limit_memory_mb else DEFAULT_MEMORY_LIMIT)
    try:
        grader.run()
        emit({"done": True})
    finally:
        grader.suite.pool.close()
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
