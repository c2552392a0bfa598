"""Which entries of a submissions folder are submissions, and how each one is loaded.

- ``NAME.py`` — a file in the simple-module convention (``tpconform.impls.simple_module``);
- ``NAME/`` with a ``tpconform.toml`` holding ``impl = "..."`` — a package with an adapter: the
  spec is ``module:object``, a module in the simple-module convention, or a ``.py`` path, all
  relative to the folder (which becomes the submission's working directory and import root).

Anything else (other files, folders without ``tpconform.toml``) is listed as not a submission, with
the reason, so a grader sees it in the report instead of losing it silently.

Each submission has a ``name`` (what the reports show: the stem, or the whole entry name where two
entries share a stem, as ``alice.py`` and ``alice/`` do) and a ``key`` (what its files in the report
folder are called: the name where it is plain, else a plain form of it and a digest of the entry's
name). Both are unique within a run: two entries are never graded, stored or reported as one.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass

from tpconform.spec.options import OptionError, loads_toml

MANIFEST = "tpconform.toml"
MAX_FILE_BYTES = 4 << 20  # one file of a submission
MAX_TOTAL_BYTES = 16 << 20  # all of a submission's files
MAX_FILES = 1000
MAX_DEPTH = 12
SKIPPED_DIRS = ("__pycache__", ".git")


class SubmissionsError(Exception):
    """Bad input (no such folder, nothing to grade); the message is one line for the user."""


@dataclass(frozen=True)
class Submission:
    name: str
    path: str  # absolute: the .py file or the package folder
    kind: str  # "file" | "package" | "invalid"
    impl: str = ""  # for a package: the spec from its manifest
    problem: str | None = None  # for "invalid": why it cannot be graded
    key: str = ""  # unique in the run; names its files in the report folder (see :func:`with_keys`)

    def files(self) -> dict[str, bytes]:
        """Every file of the submission, by path relative to it (a file submission: its name), read
        once and safely: regular files only (no symlinks, FIFOs, devices, sockets), each at most
        :data:`MAX_FILE_BYTES`, in all :data:`MAX_TOTAL_BYTES`. Raises :class:`Rejected`."""
        if self.kind == "file":
            return {os.path.basename(self.path): _read_regular(self.path, MAX_FILE_BYTES)}
        if self.kind != "package":
            return {}
        return _read_tree(self.path)

    def sha256(self) -> str:
        """A digest of everything the submission consists of (its file, or every file of its folder)."""
        h = hashlib.sha256()
        try:
            files = self.files()
        except Rejected as exc:
            return hashlib.sha256(f"rejected: {exc}".encode()).hexdigest()
        for rel in sorted(files):
            h.update(rel.encode() + b"\0")
            h.update(hashlib.sha256(files[rel]).digest())
        return h.hexdigest()


class Rejected(Exception):
    """A submission whose files cannot be accepted; the message is one line for the report."""


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _read_regular(path: str, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file (not followed through a symlink) of at most
    ``limit`` bytes; never blocks on a FIFO or reads a device."""
    name = os.path.basename(path)
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise Rejected(f"{name}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise Rejected(f"{name}: {_kind_of(st.st_mode)}; only regular files are accepted")
    if st.st_size > limit:
        raise Rejected(f"{name}: {st.st_size} bytes, over the {limit >> 20} MiB limit per file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise Rejected(f"{name}: cannot be read: {why}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between lstat and open
            raise Rejected(f"{name}: {_kind_of(st.st_mode)}; only regular files are accepted")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Rejected(f"{name}: over the {limit >> 20} MiB limit per file")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_tree(root: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0

    def walk(folder: str, rel: str, depth: int) -> None:
        nonlocal total
        if depth > MAX_DEPTH:
            raise Rejected(f"{rel}: folders nested deeper than {MAX_DEPTH}")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise Rejected(f"{rel or '.'}: cannot be listed: {exc.strerror}") from None
        for e in entries:
            path, name = os.path.join(folder, e.name), os.path.join(rel, e.name) if rel else e.name
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                if e.name not in SKIPPED_DIRS:
                    walk(path, name, depth + 1)
                continue
            if not stat.S_ISREG(st.st_mode):
                raise Rejected(f"{name}: {_kind_of(st.st_mode)}; only regular files are accepted")
            if len(files) >= MAX_FILES:
                raise Rejected(f"more than {MAX_FILES} files")
            data = _read_regular(path, MAX_FILE_BYTES)
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise Rejected(f"over {MAX_TOTAL_BYTES >> 20} MiB in all")
            files[name] = data

    root_st = os.lstat(root)
    if not stat.S_ISDIR(root_st.st_mode):
        raise Rejected(f"{os.path.basename(root)}: {_kind_of(root_st.st_mode)}")
    walk(root, "", 0)
    return files


def _package(name: str, path: str) -> Submission:
    manifest = os.path.join(path, MANIFEST)
    if not os.path.lexists(manifest):
        return Submission(name, path, "invalid", problem=f"a folder without {MANIFEST} (expected impl = \"...\")")
    try:
        impl = loads_toml(_read_regular(manifest, 64 << 10).decode("utf-8"), MANIFEST).get("impl")
    except Rejected as exc:
        return Submission(name, path, "invalid", problem=str(exc))
    except UnicodeDecodeError as exc:
        return Submission(name, path, "invalid", problem=f"{MANIFEST} cannot be read: {str(exc)[:200]}")
    except OptionError as exc:
        return Submission(name, path, "invalid", problem=str(exc)[:240])
    if not isinstance(impl, str) or not impl.strip():
        return Submission(name, path, "invalid", problem=f"{MANIFEST} has no impl = \"module:object\" string")
    impl = impl.strip()
    outside = _outside(impl, path)
    if outside:
        return Submission(name, path, "invalid", problem=f"{MANIFEST}: impl = {impl[:100]!r} {outside}")
    return Submission(name, path, "package", impl=impl)


SUITE_TOP_LEVEL = ("tpconform",)  # the one import package the suite installs


def _outside(impl: str, path: str) -> str | None:
    """Why ``impl`` would load something other than the submission's own code (``None``: it does not):
    a registry name (the suite's reference, a seeded bug), an absolute or ``..`` path, a module that
    is not a file or folder of the submission, or one named like the suite's own packages."""
    if impl.endswith(".py") or "/" in impl or os.sep in impl:
        parts = impl.replace(os.sep, "/").split("/")
        if os.path.isabs(impl) or ".." in parts or not impl.endswith(".py"):
            return "must be a .py file inside the submission's folder"
        return None
    top = impl.split(":", 1)[0].split(".", 1)[0]
    if not top.isidentifier():
        return "is not module:object"
    if top in SUITE_TOP_LEVEL:
        return "names the grading suite's own code, not the submission's"
    if not (os.path.isdir(os.path.join(path, top)) or os.path.isfile(os.path.join(path, top + ".py"))):
        return f"names no module of the submission (no {top}/ or {top}.py in its folder)"
    return None


def _shown(name: str) -> str:
    """``name`` as text every report can hold: a byte that is not UTF-8 (kept by ``os.listdir`` as a
    lone surrogate) as ``\\xHH``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def with_keys(subs: list[Submission]) -> list[Submission]:
    """``subs`` with unique names and keys. A name several entries share (``alice.py`` and ``alice/``
    are both "alice") becomes each one's entry name, which its folder makes unique; a key is the name
    where it is plain (letters, digits, ``._-``, at most 100 characters), else a plain form of it,
    ``~`` and a digest of the entry name (no plain key holds a ``~``, so the two kinds never meet)."""
    raw = [os.path.basename(s.path) for s in subs]
    entries = [_shown(e) for e in raw]
    names = [_shown(s.name) for s in subs]
    for _ in subs:  # each round turns the names several entries share into their entry names
        shared = {n for n in names if names.count(n) > 1}
        names = [e if n in shared else n for n, e in zip(names, entries)]
    keys = []
    for name, entry in zip(names, raw):
        if PLAIN_KEY.fullmatch(name):
            keys.append(name)
        else:
            plain = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "submission"
            digest = hashlib.sha256(entry.encode("utf-8", "surrogateescape")).hexdigest()[:10]
            keys.append(f"{plain}~{digest}")
    if len(set(keys)) != len(keys):  # not reachable with distinct entry names; never merge if it were
        raise SubmissionsError("two submissions would be stored under one name; rename one of them")
    return [dataclasses.replace(s, name=n, key=k) for s, n, k in zip(subs, names, keys)]


def discover(folder: str) -> list[Submission]:
    """The submissions in ``folder`` (or ``folder`` itself, when it is one ``.py`` file), in the
    order of their entry names, each with a unique name and key (:func:`with_keys`)."""
    folder = os.path.abspath(folder)
    if os.path.isfile(folder):
        if not folder.endswith(".py"):
            raise SubmissionsError(f"{folder}: not a folder of submissions or a .py submission")
        return with_keys([Submission(os.path.basename(folder)[:-3], folder, "file")])
    if not os.path.isdir(folder):
        raise SubmissionsError(f"{folder}: no such folder")
    found = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith((".", "_")):
            continue
        mode = os.lstat(path).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            found.append(Submission(entry, path, "invalid",
                                    problem=f"{_kind_of(mode)}; only regular files and folders are graded"))
        elif stat.S_ISDIR(mode):
            found.append(_package(entry, path))
        elif entry.endswith(".py"):
            found.append(Submission(entry[:-3], path, "file"))
        else:
            found.append(Submission(entry, path, "invalid", problem="not a .py file or a folder"))
    if not any(s.kind != "invalid" for s in found):
        raise SubmissionsError(f"{folder}: no submissions in it (expected NAME.py files or folders with {MANIFEST})")
    return with_keys(found)
