"""The failure report a person reads: the case, one line per distinct symptom (ranks with the same
symptom folded: ``ranks 0-3 output: ...``), a likely cause where a family's recogniser names one,
and the replay line. A case judged on several properties (the case-class test) reports each
symptom once, with the properties it violates."""

from __future__ import annotations

from typing import Optional, Sequence

from tpconform.engine.shell import replay_line, shell_word  # noqa: F401 - shell_word: imported from here
from tpconform.families.registry import family_of
from tpconform.spec.family import Family
from tpconform.spec.violations import Violation, fold_ranks

MAX_SYMPTOMS = 8  # distinct symptoms shown per report; the rest are counted


class PropertyViolated(AssertionError):
    """A property does not hold: the message is the whole report (the pytest plugin shows it alone,
    without pytest's and Hypothesis's own traceback, unless ``-v``)."""


def symptoms(ev, found: Sequence[Violation], fam: Family) -> list[tuple[str, Optional[str]]]:
    """``(symptom, likely cause)`` per distinct symptom of ``found``: violations equal but for their
    rank folded into one, whose cause is the first rank's (the ranks' causes are the same or none)."""
    causes = {id(v): fam.cause_of(ev, v) for v in found}
    folded = fold_ranks([(v.rank, v.message + "\0" + (causes[id(v)] or "")) for v in found])
    return [(text.split("\0")[0], text.split("\0")[1] or None) for text in folded]


def _symptom_lines(pairs: Sequence[tuple[str, Optional[str]]], suffix: Sequence[str] = ()) -> list[str]:
    lines = []
    for i, (text, cause) in enumerate(pairs[:MAX_SYMPTOMS]):
        first, *rest = text.splitlines() or [""]
        lines.append(f"  - {first}{suffix[i] if suffix else ''}")
        lines += [f"    {line}" for line in rest]
        if cause:
            lines.append(f"    likely cause: {cause}")
    if len(pairs) > MAX_SYMPTOMS:
        lines.append(f"  ... and {len(pairs) - MAX_SYMPTOMS} more")
    return lines


def replay_command(impl_spec: str, case, prop: Optional[str] = None) -> str:
    return replay_line(impl_spec, family_of(case).token(case), prop)


def format_failure(ev, prop: str, found: list[Violation], impl_spec: str, fam: Optional[Family] = None) -> str:
    """The report of one property violated by one example."""
    fam = fam or family_of(ev.case)
    lines = [f"property violated: {prop.replace('_', ' ')}", f"case: {fam.describe(ev.case)}"]
    lines += _symptom_lines(symptoms(ev, found, fam))
    lines += fam.report_notes(ev)
    lines.append(f"replay: {replay_command(impl_spec, ev.case, prop)}")
    return "\n".join(lines)


def format_case_failure(ev, found: dict[str, list[Violation]], impl_spec: str,
                        fam: Optional[Family] = None) -> str:
    """The report of one example judged on several properties: each distinct symptom once, with the
    properties it violates when not all of them (a crash violates every property the same way)."""
    fam = fam or family_of(ev.case)
    violated = [prop for prop, vs in found.items() if vs]
    where: dict[tuple[str, Optional[str]], list[str]] = {}
    for prop in violated:
        for pair in symptoms(ev, found[prop], fam):
            where.setdefault(pair, []).append(prop)
    names = [p.replace("_", " ") for p in violated]
    lines = [f"case: {fam.describe(ev.case)}",
             f"{len(violated)} properties violated: {', '.join(names)}" if len(violated) > 1
             else f"property violated: {names[0]}"]
    pairs = list(where)
    suffix = ["" if len(where[p]) == len(violated) else f"  [{', '.join(q.replace('_', ' ') for q in where[p])}]"
              for p in pairs]
    lines += _symptom_lines(pairs, suffix)
    lines += fam.report_notes(ev)
    lines.append(f"replay: {replay_command(impl_spec, ev.case)}")
    return "\n".join(lines)


def first_symptom(report: str, width: int = 90) -> str:
    """A report's case, whole, and its first symptom, cut to ``width`` characters: one line."""
    case = next((line[len("case: "):] for line in report.splitlines() if line.startswith("case: ")), "")
    symptom = next((line.strip()[2:] for line in report.splitlines() if line.startswith("  - ")), "")
    return f"{case}: {symptom if len(symptom) <= width else symptom[: width - 3] + '...'}"


def covering_report(reports: Sequence[str], verbose: bool = False) -> str:
    """The case-class test's failure: the first failing case in full, the others one line each
    (every one in full when ``verbose``)."""
    head = f"{len(reports)} covering case(s) violate the spec"
    if verbose or len(reports) == 1:
        return head + ":\n\n" + "\n\n".join(reports)
    rest = list(dict.fromkeys(f"  - {first_symptom(r)}" for r in reports[1:]))  # each distinct symptom once
    if len(rest) > MAX_OTHER_CASES:
        rest = [*rest[:MAX_OTHER_CASES], f"  ... and {len(rest) - MAX_OTHER_CASES} more (-v: every case in full)"]
    return (head + "; the first in full, the others by their first symptom (-v: all in full):\n\n"
            + reports[0] + "\n\nalso failing:\n" + "\n".join(rest))


MAX_OTHER_CASES = 3  # failing covering cases listed by their first symptom beyond the first (41 per variant exist)
