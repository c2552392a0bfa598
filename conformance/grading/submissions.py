"""Which entries of a submissions folder are submissions, and how each one is loaded.

- ``NAME.py`` — a file in the simple-module convention (``impls.simple_module``);
- ``NAME/`` with a ``tpconform.toml`` holding ``impl = "..."`` — a package with an adapter: the
  spec is ``module:object``, a module in the simple-module convention, or a ``.py`` path, all
  relative to the folder (which becomes the submission's working directory and import root).

Anything else (other files, folders without ``tpconform.toml``) is listed as not a submission, with
the reason, so a grader sees it in the report instead of losing it silently.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

MANIFEST = "tpconform.toml"


class SubmissionsError(Exception):
    """Bad input (no such folder, nothing to grade); the message is one line for the user."""


@dataclass(frozen=True)
class Submission:
    name: str
    path: str  # absolute: the .py file or the package folder
    kind: str  # "file" | "package" | "invalid"
    impl: str = ""  # for a package: the spec from its manifest
    problem: str | None = None  # for "invalid": why it cannot be graded

    def sha256(self) -> str:
        """A digest of everything the submission consists of (its file, or every file of its folder)."""
        h = hashlib.sha256()
        if self.kind == "file":
            files = [self.path]
        elif os.path.isdir(self.path):
            files = sorted(os.path.join(d, f) for d, _, fs in os.walk(self.path) for f in fs
                           if "__pycache__" not in d)
        else:
            files = []
        for f in files:
            h.update(os.path.relpath(f, os.path.dirname(self.path)).encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
        return h.hexdigest()


def _package(name: str, path: str) -> Submission:
    manifest = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest):
        return Submission(name, path, "invalid", problem=f"a folder without {MANIFEST} (expected impl = \"...\")")
    try:
        with open(manifest, "rb") as fh:
            impl = tomllib.load(fh).get("impl")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return Submission(name, path, "invalid", problem=f"{MANIFEST} cannot be read: {exc}")
    if not isinstance(impl, str) or not impl.strip():
        return Submission(name, path, "invalid", problem=f"{MANIFEST} has no impl = \"module:object\" string")
    return Submission(name, path, "package", impl=impl.strip())


def discover(folder: str) -> list[Submission]:
    """The submissions in ``folder`` (or ``folder`` itself, when it is one ``.py`` file), by name."""
    folder = os.path.abspath(folder)
    if os.path.isfile(folder):
        if not folder.endswith(".py"):
            raise SubmissionsError(f"{folder}: not a folder of submissions or a .py submission")
        return [Submission(os.path.basename(folder)[:-3], folder, "file")]
    if not os.path.isdir(folder):
        raise SubmissionsError(f"{folder}: no such folder")
    found = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith((".", "_")):
            continue
        if os.path.isdir(path):
            found.append(_package(entry, path))
        elif entry.endswith(".py"):
            found.append(Submission(entry[:-3], path, "file"))
        else:
            found.append(Submission(entry, path, "invalid", problem="not a .py file or a folder"))
    if not any(s.kind != "invalid" for s in found):
        raise SubmissionsError(f"{folder}: no submissions in it (expected NAME.py files or folders with {MANIFEST})")
    return found
