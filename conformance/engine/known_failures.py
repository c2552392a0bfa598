"""Known failures: deviations from the spec that a run expects, each with its reason.

A known-failures file (TOML) lists entries::

    [[deviation]]
    id = "dtensor-empty-inner-batch"          # unique, cited in reports
    impl = "dtensor"                          # the --impl spec it is about, or "*"
    family = ["subgroups", "mlp"]             # the family (conformance/families/<name>; default: the first,
                                              # the single layer), or a list of them
    property = "*"                            # one of the family's properties, a list of them, or "*"
    variant = "*"                             # one of the family's variants, a list of them, or "*"
                                              # (linear, subgroups: column-gathered | column-sharded-output
                                              # | row-full-input | row-sliced-input; primitives: copy_to |
                                              # ...; sequence_parallel: column | row)
    when = { batch_numel = 0, batch_dims = ">=2" }   # conditions on the case (all must hold)
    message = "integer modulo by zero"        # a regex every explained violation's message matches
    reason = "why it deviates, and who is wrong"
    upstream = "https://github.com/... (optional)"
    timeout_s = 3                             # optional: the deviation is a hang (see below)
    repro = "module"                          # optional: its minimal script, impls/peers/repros/module.py
                                              # (python -m tpconform report-deviation ID prints it)

``when`` keys are the family's case fields and the facts it derives (``Family.derived_facts``; the
layer families — linear, subgroups, sequence parallel: ``batch_dims``, ``batch_numel``, ``uneven``,
``features_per_rank``, the split dim's size / world size; the MLP: the same, its split dim the hidden
width); a value is matched by
equality, a list by membership, and a string such as ``">1"``, ``"<=2"`` or ``"!=0"`` compares a
number (``batch_shape`` takes a list of ints, or a list of them).

One bug usually shows under several properties (a wrong output also breaks repeated calls and the
training step) and in every family built on the broken layer (a wrong row layer also breaks the
sub-groups and the MLP): ``property = "*"`` covers every property, and ``family`` may list several
families. Each ``variant`` and ``when`` key must mean something in every family listed (the MLP's
cases have no ``kind``, for instance): an entry whose conditions do not fit one family is refused
with one line naming it, and that family gets its own entry.

Every family's examples are judged one property at a time through ``Suite.check``, so entries are
per example for every family, and an expected violation never ends a test's search: an example
whose every violation is explained passes, and Hypothesis goes on drawing examples; a later example
with a violation no entry explains (another bug) fails the test, shrunk as usual. Keep ``when`` and
``message`` as narrow as the deviation: within the examples an entry applies to, a violation it
explains hides any other bug that shows with the same message. An entry with ``test = "<test function name>"`` (plus ``message``, and
optionally ``variant``, which then names any parameter of the test) is about a whole test instead:
its failure becomes xfail when the final (shrunk) report matches ``message``. That is coarser —
Hypothesis may shrink another failure of the same test into the known one — so prefer
example-level entries; it remains for tests of your own that do not go through the suite.

A deviation that *hangs* (the library loops forever, or waits in a collective no rank joins)
would cost a full ``--tp-timeout`` and a group restart per example. Its entry declares
``timeout_s`` (seconds, positive; example-level entries only): every example the entry applies to
runs under that bound instead of ``--tp-timeout`` (the smallest, when several such entries apply),
so the hang fails fast as a ``GroupFailure`` whose report says which entry set the bound, and is
then explained like any other failure (``message = "timed out after"``). The bound is applied
*before* the example runs, from the case alone; it never changes what is checked: an applicable
example that finishes in time is judged in full, and an entry whose applicable examples all
finish in time is stale as usual. Keep ``when`` narrow and the bound well above what the
applicable examples need when they do not hang (a slow, correct example that hits the short
bound would be taken for the known hang).

An example whose every violation is explained by some entry does not fail its test; a test that
only had explained violations is reported as xfail, naming the entries. An entry that *matched
nothing* although cases it applies to ran (the deviation is gone: the library was fixed, or the
entry is wrong) fails the run — an example counts as applicable to an entry when it passed or the entry explained
it, not when it failed as other entries describe (a crash in forward says nothing of a deviation in the
collectives it never reached); one whose cases never ran (a restricted run) is only noted. So is one
that matched nothing in a run that left out some of the properties it is about (a test file or ``-k``
alone): an entry for ``property = "*"`` applies to the shards property too, where a crash in backward
never shows, and it is judged stale only by a run of every property it lists (each family's, for
``"*"``), where it would have matched if the deviation were still there.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence, Union

from tpconform.families.registry import families, family_of, primary
from tpconform.impls.peers import peers
from tpconform.spec.options import OptionError, read_toml

_OPS = {"<=": operator.le, ">=": operator.ge, "!=": operator.ne, "==": operator.eq, "<": operator.lt,
        ">": operator.gt}
_COMPARISON = re.compile(r"^\s*(<=|>=|!=|==|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
_KEYS = {"id", "impl", "family", "property", "variant", "when", "message", "reason", "upstream", "test", "timeout_s",
         "repro"}


class KnownFailuresError(Exception):
    """A known-failures file that cannot be used; the message is one line for the user."""


def case_facts(case) -> dict[str, Any]:
    """The values ``when`` conditions can test: the case's fields plus derived ones (its family's)."""
    return family_of(case).facts(case)


def _holds(value: Any, condition: Any) -> bool:
    if isinstance(value, tuple):  # batch_shape: a list of ints, or a list of such lists
        options = condition if condition and isinstance(condition[0], list) else [condition]
        return any(list(value) == list(c) for c in options)
    if isinstance(condition, list):
        return any(_holds(value, c) for c in condition)
    if isinstance(condition, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
        m = _COMPARISON.match(condition)
        if m:
            return _OPS[m.group(1)](value, float(m.group(2)))
    return value == condition


@dataclass
class Entry:
    id: str
    impl: str
    property: Any  # a property name, a list of them, or "*"
    reason: str
    upstream: str = ""
    variant: str = "*"
    when: dict = field(default_factory=dict)
    message: str = ""
    family: Any = ""  # the family (conformance/families/<name>) whose examples it is about, or a list; "": the first
    test: str = ""  # a test function's name: the entry is about that whole test (see the module doc)
    timeout_s: Optional[float] = None  # a hang: the bound for the examples it applies to (see the module doc)
    repro: str = ""  # its minimal script, impls/peers/repros/REPRO.py (conformance/cli/deviation_report.py)
    source: str = ""
    applicable: int = 0  # examples this entry applied to (impl, property, variant, when)
    matched: int = 0  # of those, how many failed in a way it explains

    def applies(self, impl: str, prop: str, case) -> bool:
        if self.test or family_of(case).name not in _listed(self.family or primary().name):
            return False
        facts = case_facts(case)
        props, variants = _listed(self.property), _listed(self.variant)
        return (self.impl in ("*", impl) and ("*" in props or prop in props)
                and ("*" in variants or str(facts["variant"]) in variants)
                and all(k in facts and _holds(facts[k], v) for k, v in self.when.items()))

    def explains(self, message: str) -> bool:
        return not self.message or re.search(self.message, message) is not None

    def describe(self) -> str:
        up = f" [{self.upstream}]" if self.upstream else ""
        bound = f" (a hang, bounded at {self.timeout_s:g} s)" if self.timeout_s else ""
        return f"{self.id}{bound}: {self.reason}{up}"


def _listed(value: Any) -> list:
    """A key that takes one value or a list of them (``family``, ``property``, ``variant``), as a list."""
    return value if isinstance(value, list) else [value]


def _names(e: Entry, key: str, where: str) -> list[str]:
    """``e.<key>`` as a non-empty list of strings, or one clear line."""
    names = _listed(getattr(e, key))
    if not names or not all(isinstance(n, str) for n in names):
        raise KnownFailuresError(f"{where} ({e.id}): '{key}' is a name or a list of names")
    return names


def _entry(raw: Any, where: str) -> Entry:
    fams = families()
    if not isinstance(raw, dict):
        raise KnownFailuresError(f"{where}: each [[deviation]] must be a table")
    unknown = set(raw) - _KEYS
    missing = ({"id", "impl", "reason"} | ({"message"} if raw.get("test") else {"property"})) - set(raw)
    if unknown or missing:
        bad = f"unknown key(s) {sorted(unknown)}" if unknown else f"missing key(s) {sorted(missing)}"
        raise KnownFailuresError(f"{where}: {bad}; keys are {sorted(_KEYS)}")
    e = Entry(**{"property": "*", "family": primary().name, **{k: raw[k] for k in raw}}, source=where)
    named = _names(e, "family", where)
    for name in named:
        if name not in fams:
            raise KnownFailuresError(f"{where} ({e.id}): unknown family {name!r}; one of {sorted(fams)}")
    listed = [fams[name] for name in named]
    for prop in _names(e, "property", where):
        if prop != "*" and not any(prop in fam.properties for fam in listed):
            raise KnownFailuresError(f"{where} ({e.id}): unknown property {prop!r} of family "
                                     f"{' or '.join(map(repr, named))}")
    for variant in _names(e, "variant", where):
        for fam in listed:  # a variant (and a 'when' key) must mean something in every family named
            variants = tuple(str(v) for v in fam.variants() if v is not None)
            if variant not in ("*", *variants) and not e.test:
                raise KnownFailuresError(f"{where} ({e.id}): unknown variant {variant!r} of family {fam.name!r}; "
                                         f"one of {variants or '(none: it has one kind of case)'}")
    if not isinstance(e.when, dict):
        raise KnownFailuresError(f"{where} ({e.id}): 'when' must be a table")
    if e.timeout_s is not None:
        if isinstance(e.timeout_s, bool) or not isinstance(e.timeout_s, (int, float)) or not e.timeout_s > 0:
            raise KnownFailuresError(f"{where} ({e.id}): 'timeout_s' must be a positive number of seconds")
        if e.test:
            raise KnownFailuresError(f"{where} ({e.id}): 'timeout_s' bounds examples; a whole-test entry "
                                     "('test') cannot set it")
        e.timeout_s = float(e.timeout_s)
    for fam in listed:
        fields = set(getattr(fam.case_type, "__dataclass_fields__", ())) | {"variant"} | set(fam.derived_facts)
        if set(e.when) - fields:
            also = (f" of family {fam.name!r} (give it its own entry)" if len(listed) > 1 else "")
            raise KnownFailuresError(f"{where} ({e.id}): unknown 'when' key(s) {sorted(set(e.when) - fields)}{also}")
    try:
        re.compile(e.message)
    except re.error as exc:
        raise KnownFailuresError(f"{where} ({e.id}): bad 'message' regex: {exc}") from None
    return e


def _read_toml(path: str) -> dict:
    try:
        return read_toml(path, f"--known-failures={path}")
    except OptionError as exc:
        raise KnownFailuresError(str(exc)) from None


class KnownFailures:
    """The entries of one or more files, with how often each applied and matched in this run."""

    def __init__(self, entries: Iterable[Entry] = ()):
        self.entries = list(entries)
        # (family, property) of the property tests this run selected (their tp_property marks; a "*" mark, the
        # case-class and anchor tests', selects every property of its family, so a run of those tests alone judges
        # an entry on their fixed cases); None: not known (outside pytest), and then every entry is judged on what
        # ran, as if the run were complete
        self.selected: Optional[set[tuple[str, str]]] = None
        ids = [e.id for e in self.entries]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise KnownFailuresError(f"duplicate known-failure id(s) {dup}")

    @classmethod
    def load(cls, paths: Iterable[str]) -> "KnownFailures":
        entries = []
        for path in paths:
            data = _read_toml(path)
            if set(data) - {"deviation"}:
                raise KnownFailuresError(f"{path}: expected only [[deviation]] tables, found {sorted(set(data))}")
            for i, raw in enumerate(data.get("deviation", [])):
                entries.append(_entry(raw, f"{path} [[deviation]] #{i + 1}"))
        return cls(entries)

    def for_impl(self, impl: str) -> "KnownFailures":
        return KnownFailures(e for e in self.entries if e.impl in ("*", impl))

    def bound(self, impl: str, props: Union[str, Sequence[str]], case) -> Optional[Entry]:
        """The hang entry (``timeout_s``) whose bound the example, judged on ``props`` (one or several),
        runs under, or ``None``: the smallest bound among the entries that apply. Counts nothing
        (``triage`` does)."""
        props = [props] if isinstance(props, str) else props
        hangs = [e for e in self.entries if e.timeout_s and any(e.applies(impl, p, case) for p in props)]
        return min(hangs, key=lambda e: e.timeout_s or 0.0) if hangs else None

    def triage(self, impl: str, prop: str, case, messages: list[str]) -> Optional[list[Entry]]:
        """Record one evaluated example; return the entries explaining all its violations
        (``[]`` when it had none), or ``None`` when some violation is not explained."""
        applying = [e for e in self.entries if e.applies(impl, prop, case)]
        if not messages:  # the example could have shown each applying entry's deviation, and did not
            for e in applying:
                e.applicable += 1
            return []
        used: list[Entry] = []
        for msg in messages:
            entry = next((e for e in applying if e.explains(msg)), None)
            if entry is None:
                for e in applying:
                    e.applicable += 1
                return None
            if entry not in used:
                used.append(entry)
        # an example that failed as other entries describe (a crash before the stage this entry's deviation shows
        # in) says nothing about an entry that did not explain it: it is not counted as applicable to it
        for e in used:
            e.applicable += 1
            e.matched += 1
        return used

    def misses(self, impl: str, prop: str, case, messages: list[str]) -> list[str]:
        """For the report of an example that failed: each entry that applies to it, and the first of
        its violations the entry's ``message`` does not match (the entry is about this case, but not
        about this symptom: another bug, or a ``message`` to widen)."""
        lines = []
        for e in self.entries:
            missed = next((m for m in messages if not e.explains(m)), None) if e.applies(impl, prop, case) else None
            if missed is not None:
                first = missed.strip().splitlines()[0] if missed.strip() else ""
                lines.append(f"known failure {e.id} applies to this case, but its message /{e.message}/ does not "
                             f"match: {first[:160]}")
        return lines

    def select(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Note the ``(family, property)`` pairs a run's tests judge (``"*"``: every property of the family)."""
        if self.selected is None:
            self.selected = set()
        for fam, prop in pairs:
            props = families()[fam].properties if prop == "*" and fam in families() else [prop]
            self.selected.update((fam, p) for p in props)

    def left_out(self, e: Entry) -> list[str]:
        """The ``family/property`` pairs ``e`` is about that this run's tests left out (``[]`` when the
        run is not known to be a subset: outside pytest, or a whole-test entry)."""
        if self.selected is None or e.test:
            return []
        about = []
        for name in _listed(e.family):
            fam = families().get(name)
            if fam is not None:
                props = _listed(e.property)
                about += [(name, p) for p in fam.properties if "*" in props or p in props]
        return [f"{f}/{p}" for f, p in about if (f, p) not in self.selected]

    def unmatched(self) -> list[Entry]:
        return [e for e in self.entries if e.applicable and not e.matched]

    def stale(self) -> list[Entry]:
        """Entries whose cases ran but never failed as described, in a run of every property each is
        about: the run must fail. (In a run that left some out, such an entry is noted: ``summary``.)"""
        return [e for e in self.unmatched() if not self.left_out(e)]

    def unexercised(self) -> list[Entry]:
        return [e for e in self.entries if not e.applicable]

    def summary(self) -> list[str]:
        lines = []
        for e in self.entries:
            if e.matched:
                lines.append(f"expected deviation {e.id}: {e.matched} of {e.applicable} applicable examples")
        for e in self.unmatched():
            left_out = self.left_out(e)
            if not left_out:
                lines.append(f"STALE known failure {e.id} ({e.source}): {e.applicable} applicable examples ran and "
                             "none failed as described — the deviation is gone or the entry is wrong; remove or fix it")
            else:
                more = f" and {len(left_out) - 3} more" if len(left_out) > 3 else ""
                lines.append(f"known failure {e.id} explained none of its {e.applicable} applicable examples here, "
                             f"but this run left out properties it is about ({', '.join(left_out[:3])}{more}): "
                             "not judged stale (a run of all of them would)")
        for e in self.unexercised():
            lines.append(f"known failure {e.id} was not exercised in this run (no applicable example)")
        return lines


def default_files(impl_spec: str) -> list[str]:
    """The known-failures files an impl ships (the peers' deviations), applied without asking."""
    peer = peers().get(impl_spec)
    return [peer.deviations] if peer and peer.deviations else []
