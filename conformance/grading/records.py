"""The records between the sandbox and the host, as typed definitions both sides use.

The only bytes that cross from a submission's sandbox to the grader are JSON lines, one record each
(``{"describe": Describe}``, ``{"cell": Cell}``, ``{"failure": Failure}``, ``{"unusable": str}``,
``{"narrowed": str}``, ``{"done": true}``); the host stores what it took in as a :class:`StoredResult`
(``--out/submissions/KEY.json``) and reads it back on resume. Each is a ``TypedDict`` below whose
fields carry their rule (``Annotated[type, Text(2000)]``: a string cut to 2000 characters); one
function, :func:`check`, applies a definition to a value, on both sides:

- the verdict (sandbox side) builds its records with them (:func:`cell`, :func:`failure`,
  :func:`describe` with ``keep_known=True`` for what the candidate declared about itself);
- the grader (host side) checks every record as it arrives (:func:`read_stream`) and every stored
  result before it scores it (:func:`stored_result`).

A new field is one edit: a line in its definition. A field no definition has is an error, never
dropped in silence: the record is refused (:class:`Invalid`, one line saying which field) and counted,
and the grader says so in the submission's log (a refused cell is then scored as not come back).
Every string is cut and every list capped, so one submission's part of a report has a bounded size
whatever its candidate raised or printed.

No dependencies but the catalog (plain data; :mod:`tpconform.grading.catalog`): the host imports this
without torch.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional, TypedDict, get_type_hints

from tpconform.grading import catalog
from tpconform.impls.protocol import ALL_PRIMITIVES as PRIMITIVE_NAMES
from tpconform.spec.dtypes import DTYPES as DTYPE_NAMES

MAX_LINE_BYTES = 1 << 20  # one record
MAX_STREAM_BYTES = 16 << 20  # everything one submission sends
MAX_TEXT = 2000  # a reason, a message, a description
MAX_FAILURE = 8000  # a failure report
MAX_ERRORS = 16  # error rows per cell
MAX_NAME = 200
CELL_VERDICTS = ("pass", "fail", "crash", "hang", "timeout", "not-declared", "n/a")
SCOPES = ("contract", "beyond")  # scored / outside --contract (reported, no points)
FAILURE_KINDS = ("property", "raised", "shape", "crash", "hang")
MAX_FAILURES = 400  # failure groups per submission (every family's, up to grading.failures.MAX_GROUPS a variant and scope)
MAX_GROUP_ID = 12
STATUSES = ("done", "timeout", "crashed")


class Invalid(ValueError):
    """A record (or a stored result) that does not fit its definition; the message is one line."""


def cut(text: Any, limit: int = MAX_TEXT) -> str:
    """``text`` as a string of at most about ``limit`` characters (the cut is marked)."""
    s = text if isinstance(text, str) else str(text)
    if len(s) <= limit:
        return s
    return s[:limit] + f"… [{len(s) - limit} more characters cut]"


# -- the rules a field's annotation carries ------------------------------------------------------
_ABSENT = object()  # a field with no default stays absent when the record leaves it out


@dataclass(frozen=True)
class Text:
    """A string, cut to ``limit``; ``None`` allowed when ``optional``; ``none_as`` replaces a ``None``."""
    limit: int = MAX_TEXT
    optional: bool = False
    default: Any = _ABSENT
    none_as: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        if v is None and self.none_as is not _ABSENT:
            return self.none_as
        if v is None and self.optional:
            return None
        if not isinstance(v, str):
            raise Invalid(f"{where}: expected a string, got {type(v).__name__}")
        return cut(v, self.limit)


@dataclass(frozen=True)
class Int:
    lo: int = 0
    hi: int = 10**9
    optional: bool = False
    default: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        if v is None and self.optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not self.lo <= v <= self.hi:
            raise Invalid(f"{where}: expected an integer in [{self.lo}, {self.hi}]")
        return v


@dataclass(frozen=True)
class Num:
    """A number; a non-finite one as the string ``"inf"``, ``"-inf"`` or ``"nan"``."""
    default: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise Invalid(f"{where}: expected a number")
        if isinstance(v, str):
            if v not in ("inf", "-inf", "nan"):
                raise Invalid(f"{where}: expected a number or inf/nan")
            return v
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v


@dataclass(frozen=True)
class Bool:
    coerce: bool = False  # any value, read as true or false
    default: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        if self.coerce:
            return bool(v)
        if not isinstance(v, bool):
            raise Invalid(f"{where}: expected true or false")
        return v


@dataclass(frozen=True)
class OneOf:
    """One of ``choices`` (a tuple, or a function of none giving it: the catalog, read when checked)."""
    choices: Any
    default: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        choices = self.choices() if callable(self.choices) else self.choices
        if not isinstance(v, str) or v not in choices:
            raise Invalid(f"{where}: unknown value {cut(repr(v), 60)}")
        return v


@dataclass(frozen=True)
class ListOf:
    """A list of ``item``; longer than ``most``: cut there (``cap``) or refused; ``least`` items at least."""
    item: Any
    most: Optional[int] = None
    cap: bool = True
    least: int = 0
    default: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        if not isinstance(v, list):
            raise Invalid(f"{where}: expected a list")
        if self.most is not None and len(v) > self.most and not self.cap or len(v) < self.least:
            raise Invalid(f"{where}: expected {self.least}-{self.most} items, got {len(v)}")
        kept = v[:self.most] if self.most is not None else v
        return [_apply(self.item, x, f"{where}[{i}]", keep_known) for i, x in enumerate(kept)]


@dataclass(frozen=True)
class MapOf:
    """An object from names (cut to ``MAX_NAME``) to ``item``, its first ``most`` entries."""
    item: Any
    most: int
    default: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        if not isinstance(v, dict):
            raise Invalid(f"{where}: expected an object")
        return {Text(MAX_NAME)(k, where): _apply(self.item, x, f"{where}.{cut(k, 40)}", keep_known)
                for k, x in list(v.items())[:self.most]}


@dataclass(frozen=True)
class Maybe:
    """``None``, or the record ``record``."""
    record: Any
    default: Any = _ABSENT

    def __call__(self, v: Any, where: str, keep_known: bool = False) -> Any:
        return None if v is None else check(self.record, v, where, keep_known=keep_known)


def _apply(rule: Any, v: Any, where: str, keep_known: bool = False) -> Any:
    return check(rule, v, where, keep_known=keep_known) if _is_record(rule) else rule(v, where, keep_known)


def _is_record(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, dict) and hasattr(t, "__required_keys__")


# -- the records --------------------------------------------------------------------------------
class ErrorRow(TypedDict, total=False):
    """How far one quantity is from the truth on one rank (a property's violation)."""
    rank: Annotated[Optional[int], Int(0, 4096, optional=True, default=None)]
    quantity: Annotated[str, Text(MAX_NAME, default="")]
    message: Annotated[str, Text(MAX_TEXT, default="")]
    max_abs_error: Annotated[Any, Num()]
    max_rel_error: Annotated[Any, Num()]
    got: Annotated[Any, Num()]
    expected: Annotated[Any, Num()]
    tolerance: Annotated[Any, Num()]
    worst_index: Annotated[list, ListOf(Int(), most=8, cap=False)]
    elements_outside: Annotated[int, Int(0, 10**12)]
    elements: Annotated[int, Int(0, 10**12)]


class _ExampleKeys(TypedDict):
    token: Annotated[str, Text(MAX_TEXT)]
    description: Annotated[str, Text(MAX_TEXT)]


class MinimalExample(_ExampleKeys, total=False):
    """The smallest failing case found: its replay token, in words, and the command that replays it."""
    shrunk: Annotated[bool, Bool(coerce=True, default=False)]
    replay: Annotated[str, Text(MAX_TEXT)]


class _CellKeys(TypedDict):
    property: Annotated[str, OneOf(lambda: catalog.catalog().all_properties)]
    variant: Annotated[str, OneOf(lambda: catalog.catalog().all_variants)]
    verdict: Annotated[str, OneOf(CELL_VERDICTS)]


class Cell(_CellKeys, total=False):
    """One property on one variant, in one scope (``docs/GRADING.md``'s schema, ``variants``)."""
    reason: Annotated[Optional[str], Text(MAX_TEXT, optional=True, default=None)]
    examples: Annotated[int, Int(default=0)]
    scope: Annotated[str, OneOf(SCOPES)]  # kept only when "beyond" (the default is "contract")
    failures: Annotated[list, ListOf(Text(MAX_GROUP_ID), most=MAX_ERRORS)]  # ids of the failures it lost to
    classes: Annotated[list, ListOf(Int(), most=2, cap=False, least=2)]  # [contract classes met, classes]
    failure: Annotated[Optional[str], Text(MAX_FAILURE, optional=True)]
    minimal_example: MinimalExample
    errors: Annotated[list, ListOf(ErrorRow, most=MAX_ERRORS)]


class _FailureKeys(TypedDict):
    id: Annotated[str, Text(MAX_GROUP_ID)]
    kind: Annotated[str, OneOf(FAILURE_KINDS)]
    scope: Annotated[str, OneOf(SCOPES)]
    variant: Annotated[str, OneOf(lambda: catalog.catalog().all_variants)]  # any family's: one search each
    property: Annotated[str, OneOf(lambda: ("*", *catalog.catalog().all_properties))]
    properties: Annotated[list, ListOf(OneOf(lambda: catalog.catalog().all_properties))]


class Failure(_FailureKeys, total=False):
    """One distinct failure (a group of examples with one signature; ``tpconform.grading.failures``)."""
    case_class: Annotated[str, Text(MAX_NAME, default="")]
    cause: Annotated[str, Text(MAX_NAME * 2, default="")]
    summary: Annotated[str, Text(MAX_TEXT, default="")]
    examples: Annotated[int, Int(default=0)]
    failure: Annotated[str, Text(MAX_FAILURE, default="")]
    beyond_why: Annotated[Optional[str], Text(MAX_NAME * 2, optional=True, default=None)]
    hint: Annotated[Optional[str], Text(MAX_NAME * 2, optional=True, default=None)]
    minimal_example: MinimalExample
    errors: Annotated[list, ListOf(ErrorRow, most=MAX_ERRORS, default=[])]


_DTYPES = ListOf(OneOf(DTYPE_NAMES), most=4, cap=False)
_PRIMITIVES = ListOf(OneOf(PRIMITIVE_NAMES), most=len(PRIMITIVE_NAMES), cap=False, least=1)


class FamilyDeclaration(TypedDict, total=False):
    """What one family declares for itself (``Capabilities.families``)."""
    uneven_shards: Annotated[bool, Bool()]
    padded_shards: Annotated[bool, Bool()]
    accepts_group: Annotated[bool, Bool()]
    backward: Annotated[bool, Bool()]
    equal_blocks: Annotated[bool, Bool()]
    primitives: Annotated[list, _PRIMITIVES]
    dtypes: Annotated[list, _DTYPES]


class _CapabilityKeys(TypedDict):
    column_gather_output: Annotated[list, ListOf(Bool(), most=2, cap=False)]
    row_input_is_parallel: Annotated[list, ListOf(Bool(), most=2, cap=False)]
    uneven_shards: Annotated[bool, Bool()]
    dtypes: Annotated[list, _DTYPES]


class DeclaredCapabilities(_CapabilityKeys, total=False):
    """The submission's capabilities as it declares them (``impls.protocol.Capabilities``), for the report."""
    accepts_group: Annotated[bool, Bool()]
    padded_shards: Annotated[bool, Bool()]
    backward: Annotated[bool, Bool()]
    equal_blocks: Annotated[bool, Bool()]
    primitives: Annotated[list, _PRIMITIVES]
    families: Annotated[dict, MapOf(FamilyDeclaration, most=16)]


class _DescribeKeys(TypedDict):
    capabilities: DeclaredCapabilities


class Describe(_DescribeKeys, total=False):
    """Name, version and capabilities as the submission declares them."""
    name: Annotated[str, Text(MAX_NAME, default="")]
    version: Annotated[str, Text(MAX_NAME, default="", none_as="")]


class Suspicious(TypedDict, total=False):
    file: Annotated[str, Text(MAX_NAME, default="")]
    line: Annotated[int, Int(default=0)]
    code: Annotated[str, Text(300, default="")]
    why: Annotated[str, Text(MAX_NAME, default="")]


class StoredResult(TypedDict, total=False):
    """What the host took in from one submission's sandbox, with how it ended (``isolation.run_isolated``)."""
    status: Annotated[str, OneOf(STATUSES)]
    describe: Annotated[Optional[Describe], Maybe(Describe, default=None)]
    unusable: Annotated[Optional[str], Text(optional=True, default=None)]
    cells: Annotated[list, ListOf(Cell, default=[])]
    failures: Annotated[list, ListOf(Failure, most=MAX_FAILURES, cap=False, default=[])]
    exit_code: Annotated[Any, Num()]
    seconds: Annotated[Any, Num()]
    log_tail: Annotated[str, Text(4000, default="")]
    tampered: Annotated[list, ListOf(Text(MAX_NAME), most=50)]
    over_budget: Annotated[str, Text(MAX_NAME * 2)]
    peak_memory_mb: Annotated[int, Int(0, 10**9)]
    sandbox: Annotated[str, Text(MAX_NAME)]
    dropped_records: Annotated[int, Int(0, 10**12)]
    narrowed: Annotated[Optional[str], Text(optional=True)]
    suspicious: Annotated[list, ListOf(Suspicious, most=100, default=[])]


# -- checking a value against its definition ---------------------------------------------------
def _fields(cls) -> dict[str, tuple[Any, Any]]:
    """``{field: (rule, default)}`` of a record definition, in declaration order."""
    got = _FIELD_CACHE.get(cls)
    if got is None:
        got = {}
        for name, hint in get_type_hints(cls, include_extras=True).items():
            meta = getattr(hint, "__metadata__", None)
            rule = meta[0] if meta else hint  # a bare record type: a nested record
            got[name] = (rule, getattr(rule, "default", _ABSENT))
        _FIELD_CACHE[cls] = got
    return got


_FIELD_CACHE: dict = {}


def check(cls, value: Any, where: Optional[str] = None, *, keep_known: bool = False) -> dict:
    """``value`` as the record ``cls`` defines it, cut to size: every field checked by its rule,
    required ones present, absent ones given their default. A field ``cls`` does not define raises
    :class:`Invalid` — unless ``keep_known`` (the verdict, projecting what a candidate declared
    about itself onto the record), which leaves it out."""
    where = where or cls.__name__
    if not isinstance(value, dict):
        raise Invalid(f"{where}: not an object")
    fields = _fields(cls)
    unknown = [k for k in value if k not in fields]
    if unknown and not keep_known:
        names = ", ".join(repr(cut(str(k), 40)) for k in unknown[:3])
        raise Invalid(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {names} (the record definitions: "
                      "tpconform.grading.records)")
    missing = [k for k in cls.__required_keys__ if k not in value]
    if missing:
        raise Invalid(f"{where}: missing field(s) {sorted(missing)}")
    out: dict = {}
    for name, (rule, default) in fields.items():
        if name in value:
            out[name] = _apply(rule, value[name], f"{where}.{name}", keep_known)
        elif default is not _ABSENT:
            out[name] = list(default) if isinstance(default, list) else default
    post = _POST.get(cls)
    return post(out, where) if post else out


def _cell_post(out: dict, where: str) -> dict:
    if out["variant"] not in catalog.catalog().variants_of[out["property"]]:
        raise Invalid(f"{where}: variant {out['variant']!r} is not one of property {out['property']!r}")
    if out.get("scope") == "contract":
        del out["scope"]
    if out["verdict"] != "pass" and out["reason"] is None:
        out["reason"] = "(no reason given)"
    return out


def _failure_post(out: dict, where: str) -> dict:
    out["properties"] = list(dict.fromkeys(out["properties"]))
    return out


def _stored_post(out: dict, where: str) -> dict:
    if "status" not in out:
        raise Invalid(f"{where}: missing field(s) ['status']")
    cells = out["cells"]
    if len(cells) > len(catalog.catalog().all_properties) * len(catalog.catalog().all_variants) * len(SCOPES):
        raise Invalid(f"{where}: too many cells")
    return out


_POST: dict[Any, Callable[[dict, str], dict]] = {Cell: _cell_post, Failure: _failure_post,
                                                 StoredResult: _stored_post}


# -- the records as the two sides use them ------------------------------------------------------
def describe(d: Any, keep_known: bool = False) -> dict:
    """The ``describe`` record; ``keep_known``: the verdict's projection of the impl's own description
    (which may say more than the report keeps: its convention, its set-up time), empty parts left out."""
    if keep_known and isinstance(d, dict) and isinstance(d.get("capabilities"), dict):
        caps = {k: v for k, v in d["capabilities"].items() if not (k in ("families", "primitives") and not v)}
        d = {**d, "capabilities": caps}
    return check(Describe, d, "describe", keep_known=keep_known)


def cell(c: Any) -> dict:
    return check(Cell, c, "cell")


def failure(f: Any) -> dict:
    return check(Failure, f, "failure")


def record(obj: Any) -> tuple[str, Any]:
    """(kind, clean value) for one record from the verdict; raises :class:`Invalid`."""
    if not isinstance(obj, dict) or len(obj) != 1:
        raise Invalid("a record is an object with one key")
    (kind, value), = obj.items()
    if kind == "describe":
        return kind, describe(value)
    if kind == "cell":
        return kind, cell(value)
    if kind == "failure":
        return kind, failure(value)
    if kind in ("unusable", "narrowed"):
        return kind, Text()(value, kind)
    if kind == "done":
        if value is not True:
            raise Invalid("done: not true")
        return kind, True
    raise Invalid(f"unknown record kind {cut(kind, 40)!r}")


def read_stream(fd: int, sink: list, stats: dict) -> None:
    """Read JSON lines from ``fd`` into ``sink`` as (kind, value), at most :data:`MAX_STREAM_BYTES`
    in all and :data:`MAX_LINE_BYTES` a line; ``stats`` counts what was dropped (``dropped``) and
    says why the first refused record was (``first_refused``)."""
    stats.setdefault("dropped", 0)
    stats.setdefault("overflow", False)
    total, buf = 0, b""
    with os.fdopen(fd, "rb", buffering=0) as fh:
        while True:
            chunk = fh.read(65536)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_STREAM_BYTES:
                stats["overflow"] = True
                break  # stop reading; the writer blocks, then is killed with its sandbox
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                _take(line, sink, stats)
            if len(buf) > MAX_LINE_BYTES:
                stats["dropped"] += 1
                buf = b""
                stats["skip_line"] = True
    if buf:
        _take(buf, sink, stats)


def _take(line: bytes, sink: list, stats: dict) -> None:
    if stats.pop("skip_line", False):
        stats["dropped"] += 1  # the rest of a line that was too long
        return
    if len(line) > MAX_LINE_BYTES:
        stats["dropped"] += 1
        stats.setdefault("first_refused", f"a record longer than {MAX_LINE_BYTES} bytes")
        return
    try:
        sink.append(record(json.loads(line)))
    except Invalid as exc:
        stats["dropped"] += 1
        stats.setdefault("first_refused", str(exc))
    except (ValueError, RecursionError):
        stats["dropped"] += 1
        stats.setdefault("first_refused", "a line that is not JSON")


def refused_line(stats: dict) -> Optional[str]:
    """The line the grader adds to a submission's log when records were refused (``None``: none were)."""
    if not stats.get("dropped"):
        return None
    return (f"grader: {stats['dropped']} record(s) from the sandbox refused; the first: "
            f"{cut(stats.get('first_refused', 'too long'), 300)}")


def stored_result(result: Any) -> dict:
    """A result stored in ``--out`` (see ``isolation.run_isolated``), checked again; raises :class:`Invalid`."""
    if isinstance(result, dict) and "problem" in result:
        if set(result) != {"problem"}:
            raise Invalid("result: a problem with other fields")
        return {"problem": Text()(result["problem"], "result.problem")}
    if isinstance(result, dict):  # a field the host wrote as null is one it did not write
        result = {k: v for k, v in result.items() if v is not None or k in ("describe", "unusable", "narrowed")}
    return check(StoredResult, result, "result")


def write_atomic(path: str, data: dict) -> None:
    """``data`` as JSON at ``path``, whole or not at all (a run cut off leaves the old file)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)
