"""The only bytes that cross from a submission's sandbox to the grader: JSON-line records, checked
against a schema and cut to a bounded size before anything else reads them.

A record that does not fit the schema is dropped (and counted); every string is truncated, every
list capped, so one submission's part of a report has a bounded size whatever its candidate
raised or printed. The same check runs on results stored in ``--out`` before a resume scores them,
so a damaged or forged results file is graded again instead of crashing scoring on every run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Optional

from tpconform.families.linear.verdict import SPEC
from tpconform.grading.catalog import ALL_PROPERTIES, ALL_VARIANTS, VARIANTS_OF
from tpconform.impls.protocol import ALL_PRIMITIVES as PRIMITIVE_NAMES
from tpconform.spec.dtypes import DTYPES as DTYPE_NAMES
from tpconform.strategies import VARIANTS

MAX_LINE_BYTES = 1 << 20  # one record
MAX_STREAM_BYTES = 16 << 20  # everything one submission sends
MAX_TEXT = 2000  # a reason, a message, a description
MAX_FAILURE = 8000  # a failure report
MAX_ERRORS = 16  # error rows per cell
MAX_NAME = 200
VARIANT_NAMES = tuple(str(v) for v in VARIANTS)
CELL_VERDICTS = ("pass", "fail", "crash", "hang", "timeout", "not-declared", "n/a")
SCOPES = ("contract", "beyond")  # scored / outside --contract (reported, no points)
FAILURE_KINDS = ("property", "raised", "shape", "crash", "hang")
MAX_FAILURES = 200  # failure groups per submission
MAX_GROUP_ID = 12


class Invalid(ValueError):
    pass


def cut(text: Any, limit: int = MAX_TEXT) -> str:
    """``text`` as a string of at most about ``limit`` characters (the cut is marked)."""
    s = text if isinstance(text, str) else str(text)
    if len(s) <= limit:
        return s
    return s[:limit] + f"… [{len(s) - limit} more characters cut]"


def _str(v: Any, limit: int = MAX_TEXT, optional: bool = False) -> Optional[str]:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise Invalid(f"expected a string, got {type(v).__name__}")
    return cut(v, limit)


def _num(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise Invalid("expected a number")
    if isinstance(v, str):
        if v not in ("inf", "-inf", "nan"):
            raise Invalid("expected a number or inf/nan")
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _int(v: Any, lo: int = 0, hi: int = 10**9) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise Invalid("expected a bounded integer")
    return v


def describe(d: Any) -> dict:
    if not isinstance(d, dict):
        raise Invalid("describe: not an object")
    caps = d.get("capabilities")
    if not isinstance(caps, dict):
        raise Invalid("describe: no capabilities")
    cg, rp = caps.get("column_gather_output"), caps.get("row_input_is_parallel")
    dtypes = caps.get("dtypes")
    for lst in (cg, rp):
        if not isinstance(lst, list) or len(lst) > 2 or not all(isinstance(b, bool) for b in lst):
            raise Invalid("describe: bad capabilities")
    if not isinstance(dtypes, list) or len(dtypes) > 4 or not all(x in DTYPE_NAMES for x in dtypes):
        raise Invalid("describe: bad dtypes")
    if not isinstance(caps.get("uneven_shards"), bool):
        raise Invalid("describe: bad uneven_shards")
    kept = {"column_gather_output": list(cg), "row_input_is_parallel": list(rp),
            "uneven_shards": caps["uneven_shards"], "dtypes": list(dtypes)}
    for flag in ("accepts_group", "padded_shards", "backward", "equal_blocks"):
        if isinstance(caps.get(flag), bool):
            kept[flag] = caps[flag]
    if _primitive_names(caps.get("primitives")):
        kept["primitives"] = list(caps["primitives"])
    families = caps.get("families")
    if isinstance(families, dict) and families:
        kept["families"] = {_str(name, MAX_NAME): _family_declaration(o) for name, o in list(families.items())[:16]}
    return {"name": _str(d.get("name", ""), MAX_NAME), "version": _str(d.get("version", "") or "", MAX_NAME),
            "capabilities": kept}


def _primitive_names(names: Any) -> bool:
    """A well-formed ``primitives`` declaration: a list of the four primitives' names (a report shows it)."""
    return (isinstance(names, list) and 0 < len(names) <= len(PRIMITIVE_NAMES)
            and all(isinstance(p, str) and p in PRIMITIVE_NAMES for p in names))


def _family_declaration(o: Any) -> dict:
    """What one family declares for itself (``Capabilities.families``), kept for the report: known
    keys with well-formed values only."""
    if not isinstance(o, dict):
        raise Invalid("describe: bad family capabilities")
    out: dict = {}
    for key in ("uneven_shards", "padded_shards", "accepts_group", "backward", "equal_blocks"):
        if isinstance(o.get(key), bool):
            out[key] = o[key]
    if _primitive_names(o.get("primitives")):
        out["primitives"] = list(o["primitives"])
    dtypes = o.get("dtypes")
    if isinstance(dtypes, list) and len(dtypes) <= 4 and all(x in DTYPE_NAMES for x in dtypes):
        out["dtypes"] = list(dtypes)
    return out


def _example(m: Any) -> dict:
    if not isinstance(m, dict):
        raise Invalid("minimal_example: not an object")
    return {"token": _str(m.get("token"), MAX_TEXT), "description": _str(m.get("description"), MAX_TEXT),
            "shrunk": bool(m.get("shrunk")), "replay": _str(m.get("replay"), MAX_TEXT)}


_ERROR_NUMBERS = ("max_abs_error", "max_rel_error", "got", "expected", "tolerance")


def _error(e: Any) -> dict:
    if not isinstance(e, dict):
        raise Invalid("errors: not an object")
    row = {"rank": e.get("rank") if e.get("rank") is None else _int(e["rank"], 0, 4096),
           "quantity": _str(e.get("quantity", ""), MAX_NAME), "message": _str(e.get("message", ""))}
    for k in _ERROR_NUMBERS:
        if k in e:
            row[k] = _num(e[k])
    if "worst_index" in e:
        wi = e["worst_index"]
        if not isinstance(wi, list) or len(wi) > 8:
            raise Invalid("errors: bad worst_index")
        row["worst_index"] = [_int(i) for i in wi]
    for k in ("elements_outside", "elements"):
        if k in e:
            row[k] = _int(e[k], 0, 10**12)
    return row


def cell(c: Any) -> dict:
    if not isinstance(c, dict):
        raise Invalid("cell: not an object")
    if c.get("property") not in ALL_PROPERTIES or c.get("variant") not in VARIANTS_OF[c["property"]]:
        raise Invalid("cell: unknown property or variant")
    if c.get("verdict") not in CELL_VERDICTS:
        raise Invalid("cell: unknown verdict")
    out = {"property": c["property"], "variant": c["variant"], "verdict": c["verdict"],
           "reason": _str(c.get("reason"), MAX_TEXT, optional=True), "examples": _int(c.get("examples", 0))}
    if c.get("scope", "contract") not in SCOPES:
        raise Invalid("cell: unknown scope")
    if c.get("scope") == "beyond":
        out["scope"] = "beyond"
    if "failures" in c:
        out["failures"] = _ids(c["failures"])
    if "classes" in c:
        classes = c["classes"]
        if not isinstance(classes, list) or len(classes) != 2:
            raise Invalid("cell: bad classes")
        out["classes"] = [_int(classes[0]), _int(classes[1])]
    if c["verdict"] != "pass" and out["reason"] is None:
        out["reason"] = "(no reason given)"
    if "failure" in c:
        out["failure"] = _str(c["failure"], MAX_FAILURE, optional=True)
    if "minimal_example" in c:
        out["minimal_example"] = _example(c["minimal_example"])
    if "errors" in c:
        if not isinstance(c["errors"], list):
            raise Invalid("cell: errors not a list")
        out["errors"] = [_error(e) for e in c["errors"][:MAX_ERRORS]]
    return out


def _ids(v: Any) -> list[str]:
    if not isinstance(v, list):
        raise Invalid("failures: not a list")
    return [_str(i, MAX_GROUP_ID) for i in v[:MAX_ERRORS]]


def failure(f: Any) -> dict:
    """One distinct failure (a group of examples with one signature; ``tpconform.grading.failures``)."""
    if not isinstance(f, dict):
        raise Invalid("failure: not an object")
    if f.get("kind") not in FAILURE_KINDS or f.get("scope") not in SCOPES or f.get("variant") not in VARIANT_NAMES:
        raise Invalid("failure: unknown kind, scope or variant")
    if f.get("property") != "*" and f.get("property") not in SPEC:
        raise Invalid("failure: unknown property")
    props = f.get("properties")
    if not isinstance(props, list) or not all(p in SPEC for p in props):
        raise Invalid("failure: bad properties")
    out = {"id": _str(f.get("id"), MAX_GROUP_ID), "kind": f["kind"], "scope": f["scope"], "variant": f["variant"],
           "property": f["property"], "properties": list(dict.fromkeys(props)),
           "case_class": _str(f.get("case_class", ""), MAX_NAME), "cause": _str(f.get("cause", ""), MAX_NAME * 2),
           "summary": _str(f.get("summary", ""), MAX_TEXT), "examples": _int(f.get("examples", 0)),
           "failure": _str(f.get("failure", ""), MAX_FAILURE),
           "beyond_why": _str(f.get("beyond_why"), MAX_NAME * 2, optional=True),
           "hint": _str(f.get("hint"), MAX_NAME * 2, optional=True)}
    if "minimal_example" in f:
        out["minimal_example"] = _example(f["minimal_example"])
    errors = f.get("errors", [])
    if not isinstance(errors, list):
        raise Invalid("failure: errors not a list")
    out["errors"] = [_error(e) for e in errors[:MAX_ERRORS]]
    return out


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
        return kind, _str(value)
    if kind == "done":
        if value is not True:
            raise Invalid("done: not true")
        return kind, True
    raise Invalid(f"unknown record kind {cut(kind, 40)!r}")


def read_stream(fd: int, sink: list, stats: dict) -> None:
    """Read JSON lines from ``fd`` into ``sink`` as (kind, value), at most :data:`MAX_STREAM_BYTES`
    in all and :data:`MAX_LINE_BYTES` a line; ``stats`` counts what was dropped."""
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
        return
    try:
        sink.append(record(json.loads(line)))
    except (ValueError, RecursionError):
        stats["dropped"] += 1


def stored_result(result: Any) -> dict:
    """A result stored in ``--out`` (see ``isolation.run_isolated``), checked again; raises :class:`Invalid`."""
    if not isinstance(result, dict):
        raise Invalid("result: not an object")
    if "problem" in result:
        return {"problem": _str(result["problem"])}
    out: dict = {"status": result.get("status")}
    if out["status"] not in ("done", "timeout", "crashed"):
        raise Invalid("result: bad status")
    out["describe"] = None if result.get("describe") is None else describe(result["describe"])
    out["unusable"] = _str(result.get("unusable"), optional=True)
    cells = result.get("cells", [])
    if not isinstance(cells, list) or len(cells) > len(ALL_PROPERTIES) * len(ALL_VARIANTS) * len(SCOPES):
        raise Invalid("result: bad cells")
    out["cells"] = [cell(c) for c in cells]
    failures = result.get("failures", [])
    if not isinstance(failures, list) or len(failures) > MAX_FAILURES:
        raise Invalid("result: bad failures")
    out["failures"] = [failure(f) for f in failures]
    for k in ("exit_code", "seconds"):
        if result.get(k) is not None:
            out[k] = _num(result[k])
    out["log_tail"] = _str(result.get("log_tail", ""), 4000)
    tampered = result.get("tampered")
    if tampered is not None:
        if not isinstance(tampered, list):
            raise Invalid("result: bad tampered")
        out["tampered"] = [_str(t, MAX_NAME) for t in tampered[:50]]
    if result.get("over_budget") is not None:
        out["over_budget"] = _str(result["over_budget"], MAX_NAME * 2)
    if result.get("peak_memory_mb") is not None:
        out["peak_memory_mb"] = _int(result["peak_memory_mb"], 0, 10**9)
    for k in ("sandbox", "dropped_records"):
        if k in result:
            out[k] = _str(result[k], MAX_NAME) if k == "sandbox" else _int(result[k], 0, 10**12)
    if "narrowed" in result:
        out["narrowed"] = _str(result["narrowed"], optional=True)
    sus = result.get("suspicious", [])
    if not isinstance(sus, list):
        raise Invalid("result: bad suspicious")
    out["suspicious"] = [{"file": _str(s.get("file", ""), MAX_NAME), "line": _int(s.get("line", 0)),
                          "code": _str(s.get("code", ""), 300), "why": _str(s.get("why", ""), MAX_NAME)}
                         for s in sus[:100] if isinstance(s, dict)]
    return out


def write_atomic(path: str, data: dict) -> None:
    """``data`` as JSON at ``path``, whole or not at all (a run cut off leaves the old file)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)
