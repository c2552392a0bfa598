"""A submission's part of the report as its student sees it (the student page, Gradescope): every
path the grader's machine gave it — the submissions folder, the sandbox's mounts, the private copies
of an unsandboxed run, the grader's Python — made relative, and replay lines that name the student's
own file, so nothing points at a folder the student does not have."""

from __future__ import annotations

import copy
import os
import re
import sysconfig
from typing import Any

from tpconform.engine.shell import replay_line
from tpconform.grading.bwrap import SUBMISSION_MOUNT, SUITE_MOUNT

# the private folders isolation.run_isolated and SuiteSnapshot make (tempfile.mkdtemp), anywhere
_PRIVATE = re.compile(r"(?:/[^\s'\"/]+)*/tpconform-(?:sub-[A-Za-z0-9_]+/submission|suite-[A-Za-z0-9_]+)/")


def student_impl(rec: dict) -> str:
    """What the student passes as ``--impl`` in their own folder: their file's name, or their
    package's impl spec (relative to the package folder); ``rec`` is a grading record or a
    submission of the report (both have ``path``, ``kind`` and ``impl``)."""
    return rec.get("impl") or os.path.basename(rec.get("path", ""))


def _grader_prefixes(rec: dict) -> list[str]:
    path = rec.get("path", "")
    folder = os.path.dirname(path) if rec.get("kind") == "file" else path
    prefixes = [folder, SUBMISSION_MOUNT, SUITE_MOUNT]
    paths = sysconfig.get_paths()
    prefixes += [paths[k] for k in ("purelib", "platlib", "stdlib") if k in paths]
    # longest first: a folder inside another is cut as a whole
    return sorted({p.rstrip("/") + "/" for p in prefixes if p and p != "/"}, key=len, reverse=True)


def relative(text: str, rec: dict) -> str:
    """``text`` with the grader's paths for ``rec``'s submission made relative; any lone surrogate
    (text that was bytes, not UTF-8) as ``\\udcHH`` so every format can hold it."""
    text = _PRIVATE.sub("", text)
    for prefix in _grader_prefixes(rec):
        text = text.replace(prefix, "")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _walk(value: Any, rec: dict) -> Any:
    if isinstance(value, str):
        return relative(value, rec)
    if isinstance(value, list):
        return [_walk(v, rec) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, rec) for k, v in value.items()}
    return value


def view(sub: dict) -> dict:
    """A copy of the report's ``sub`` for its student: replay lines for their own folder, paths
    relative (:func:`relative`), the grader's own path of the submission left out."""
    rec = sub
    out = copy.deepcopy(sub)
    impl = student_impl(rec)
    for prop, v in out["properties"].items():
        for cell in v["variants"].values():
            ex = cell.get("minimal_example")
            if ex:
                ex["replay"] = replay_line(impl, ex["token"], prop)
    for f in out["failures"]:
        ex = f.get("minimal_example")
        if ex:
            ex["replay"] = replay_line(impl, ex["token"], f["property"] if f["property"] != "*" else None)
    out["path"] = os.path.basename(rec.get("path", ""))
    return _walk(out, rec)
