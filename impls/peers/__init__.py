"""Real tensor-parallel libraries as registry entries ("peers"), found by their files: metadata only.

A peer is one file, ``impls/peers/<name>.py``: its adapter (``Impl``, imported in worker processes only)
and, near its top, its record ``PEER = Peer(...)`` — what ``--impl=<name>`` lists, the library it
needs and how to install it, and the scope CI runs it at. Its known deviations, if it has any, are
``impls/peers/<name>.toml`` (found by the name; their scripts in ``impls/peers/repros/``). Adding a
peer is adding its file (and those two, when it has deviations): no list names it.

This module is imported by the verdict process, so it never imports a peer's file (that imports the
library): :func:`peers` reads each ``PEER = Peer(...)`` from the file's source, whose arguments must be
literals. A ``<name>.toml`` with no peer ``<name>``, or one of whose entries names another impl, is an
error (:class:`PeerError`, one line), never deviations silently not applied.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from importlib import metadata
from typing import Optional, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tpconform.impls.entries import Entry, ImplError

INSTALL = "pip install -e '.[peers]'"
FOLDER = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "tpconform.impls.peers"


@dataclass(frozen=True)
class Peer:
    """One peer, declared in its own file as ``PEER = Peer(...)`` (keyword arguments, literals only)."""

    summary: str  # the line ``--list-impls`` shows
    requires: str  # the top-level package the library installs ("" when torch alone suffices)
    distribution: str  # what pip installs (pinned in pyproject.toml's ``peers`` extra)
    install: str = INSTALL  # the command that installs it
    series: str = ""  # the release series the adapter needs ("5."), where an older one installs the same package
    ci_scope: tuple[str, ...] = ()  # the pytest arguments CI runs it with (tests/selftest/test_peers.py)
    name: str = ""  # the file's name: set by the registry, never written in the file

    @property
    def module(self) -> str:
        return f"{PACKAGE}.{self.name}"

    @property
    def entry(self) -> Entry:
        """The registry entry ``--impl=<name>`` resolves to."""
        return Entry(self.name, f"{self.module}:Impl", self.summary)

    @property
    def deviations(self) -> Optional[str]:
        """Its known-deviations file, ``<name>.toml`` beside it, or ``None`` when it has none."""
        path = os.path.join(FOLDER, f"{self.name}.toml")
        return path if os.path.isfile(path) else None


class PeerError(ImplError):
    """The peers' folder is inconsistent (a deviations file without its peer, a record that is not literal)."""


_FIELDS = {f.name for f in fields(Peer)} - {"name"}


def read_peer(path: str) -> Optional[Peer]:
    """The ``PEER = Peer(...)`` record of the file at ``path``, read from its source (not imported);
    ``None`` for a file that declares none (a helper such as ``dense.py``)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    name = os.path.splitext(os.path.basename(path))[0]
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PEER" for t in node.targets)):
            continue
        call = node.value
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Peer"
                and not call.args):
            raise PeerError(f"{path}:{node.lineno}: PEER must be Peer(...) with keyword arguments only")
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except ValueError:
            raise PeerError(f"{path}:{node.lineno}: PEER = Peer(...) takes literals only (the registry reads it "
                            "without importing the library)") from None
        unknown = set(kwargs) - _FIELDS
        if None in kwargs or unknown:
            raise PeerError(f"{path}:{node.lineno}: Peer(...) has no field(s) {sorted(map(str, unknown))}; "
                            f"fields are {', '.join(sorted(_FIELDS))}")
        try:
            peer = Peer(**kwargs)
        except TypeError as exc:
            raise PeerError(f"{path}:{node.lineno}: {exc}") from None
        peer = replace(peer, name=name, ci_scope=tuple(peer.ci_scope))
        if not all(isinstance(getattr(peer, f), str) for f in _FIELDS - {"ci_scope"}) or not all(
                isinstance(a, str) for a in peer.ci_scope):
            raise PeerError(f"{path}:{node.lineno}: Peer(...)'s fields are strings, ci_scope a list of strings")
        return peer
    return None


def discover(folder: str = FOLDER) -> dict[str, Peer]:
    """Every peer in ``folder`` by name (sorted), checked against the deviations files there."""
    found: dict[str, Peer] = {}
    for file in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file)
        if ext == ".py" and stem.isidentifier() and not stem.startswith("_"):
            peer = read_peer(os.path.join(folder, file))
            if peer is not None:
                found[stem] = peer
    for file in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file)
        if ext == ".toml":
            _check_deviations(os.path.join(folder, file), stem, found)
    return found


def _check_deviations(path: str, stem: str, found: dict[str, Peer]) -> None:
    if stem not in found:
        raise PeerError(f"{path}: known deviations of no registered peer: there is no {stem}.py declaring "
                        "PEER = Peer(...) beside it (a peer's deviations are <name>.toml beside <name>.py)")
    try:
        with open(path, "rb") as fh:
            entries = tomllib.load(fh).get("deviation", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PeerError(f"{path}: cannot read it: {exc}") from None
    others = sorted({str(e.get("impl")) for e in entries if isinstance(e, dict) and e.get("impl") != stem})
    if others:
        raise PeerError(f"{path}: entries for impl(s) {others} in the deviations of peer {stem!r} "
                        "(each peer's deviations are its own file, <impl>.toml)")


@lru_cache(maxsize=None)
def peers() -> dict[str, Peer]:
    """Every peer of this package, by name."""
    return discover(FOLDER)


def deviation_files() -> list[str]:
    """Every peer's known-deviations file."""
    return [p.deviations for p in peers().values() if p.deviations]


def missing(peer: Union[str, Peer]) -> Optional[str]:
    """One line saying how to install ``peer``'s library, or ``None`` when it is importable.

    Uses ``find_spec`` on the top-level package, which locates it without importing it, and the installed
    distribution's metadata for a peer that needs a release series (ColossalAI's line installs transformers 4.x;
    the transformers peer needs 5.x)."""
    if isinstance(peer, str):
        peer = peers()[peer]
    how = f"install the peers extra: {INSTALL}" if peer.install == INSTALL else f"install it: {peer.install}"
    if not peer.requires or importlib.util.find_spec(peer.requires) is not None:
        if not peer.series:
            return None
        dist_name = peer.distribution.split("==")[0]
        try:
            installed = metadata.version(dist_name)
        except metadata.PackageNotFoundError:
            installed = "unknown"
        if installed.startswith(peer.series):
            return None
        return f"{dist_name} {installed} is installed, the adapter needs {peer.series}x; {how}"
    return f"{peer.distribution} is not installed; {how}"
