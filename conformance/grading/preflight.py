"""Grade a submission that does not import in seconds: load it once, early, in a process of its own.

First, before anything heavy is imported, :func:`static_reason` reads the entry file's leading
imports without running them: a syntax error, or an unconditional top-level ``import`` of a module
that exists neither in the environment nor in the submission, is what the worker would report, in
its words, a few milliseconds in (on a loaded machine the torch import alone takes tens of seconds).
It stops at the first statement that could change what later imports find (anything but an import
of the environment's modules), so it never calls a file that imports unimportable.

Then the verdict process (:mod:`tpconform.grading.verdict`) starts :func:`watch` right after the
forkserver, before it imports the grader (torch, Hypothesis, the suite). One process forked from the
forkserver (torch already imported there) loads the impl exactly as a worker does and answers in one
line; the verdict never imports candidate code itself. When the candidate's own import raised an
``ImportError`` or a ``SyntaxError`` — it does not import, whatever process group it runs in — the
verdict records it as unusable and exits at once, without waiting for its own imports or starting
any process group. Anything else (it imports, it fails in another way, it takes long) changes
nothing: the grade goes on and the first worker's ``describe`` decides, as before, so a layer that
needs its process group while being loaded is never failed here.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
from typing import Callable, Optional

PROBE_TIMEOUT_S = 60.0  # the longest the probe may take (the grade goes on beside it meanwhile)
# what the candidate's import raises when it cannot import anywhere: no module, bad syntax
NOT_IMPORTABLE = (ImportError, SyntaxError)


MAX_DEPTH = 8  # sibling modules followed, import within import


def static_reason(spec: str, root: Optional[str] = None) -> Optional[str]:
    """Why ``spec`` cannot import, from its source alone (``None``: nothing certain). ``root`` is the
    submission's folder, the workers' import root (the working directory by default)."""
    root = os.path.abspath(root or os.getcwd())
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(os.path.join(root, spec))
        why = _first_missing(path, [os.path.dirname(path), root], 0)
        return f"--impl={spec}: importing it failed: {why}" if why else None
    module = spec.split(":", 1)[0]
    search: Optional[list[str]] = [root]
    for depth, part in enumerate(module.split(".")):
        found = importlib.machinery.PathFinder.find_spec(part, search)
        if found is None or not found.origin or not os.path.isfile(found.origin):
            return None  # not a file of the submission (or a namespace package): the workers decide
        why = _first_missing(found.origin, [root], 0)
        if why:
            return f"--impl={spec}: importing {module} failed: {why}"
        if not _only_imports(found.origin):
            return None  # its body may change what the next part finds
        search = list(found.submodule_search_locations or [])
    return None


def _parse(path: str):
    with open(path, "rb") as fh:
        return ast.parse(fh.read(), filename=path)


def _only_imports(path: str) -> bool:
    """Does importing ``path`` only import the environment's modules (nothing that could move sys.path)?"""
    try:
        body = _parse(path).body
    except (OSError, SyntaxError, ValueError, RecursionError):
        return False
    for node in body:
        if _docstring(node):
            continue
        names = _imported(node)
        if names is None or not all(_installed(n.split(".", 1)[0]) for n in names):
            return False
    return True


def _imported(node) -> Optional[list[str]]:
    """The absolute module names an import statement imports (``None``: not one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return None


def _installed(top: str) -> bool:
    """Is ``top`` a module of the environment (the standard library, an installed package)?"""
    if top in sys.builtin_module_names or top in sys.stdlib_module_names or top in sys.modules:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _first_missing(path: str, search: list[str], depth: int) -> Optional[str]:
    """The error importing the file ``path`` raises for certain ("SyntaxError: ..." or
    "ModuleNotFoundError: ..."), from its leading imports; ``None`` when nothing is certain."""
    try:
        tree = _parse(path)
    except SyntaxError as exc:
        return f"SyntaxError: {exc}"
    except (OSError, ValueError, RecursionError):
        return None
    for node in tree.body:
        if _docstring(node) or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            continue
        names = _imported(node)
        if names is None:
            return None  # anything else may change what the imports after it find
        for name in names:
            top = name.split(".", 1)[0]
            if _installed(top):
                continue  # the environment's (what it runs at import is trusted not to move sys.path)
            local = importlib.machinery.PathFinder.find_spec(top, search)
            if local is None:
                return f"ModuleNotFoundError: No module named {top!r}"
            # the submission's own module: its leading imports, then nothing more is certain
            if depth < MAX_DEPTH and local.origin and os.path.isfile(local.origin):
                return _first_missing(local.origin, search, depth + 1)
            return None
    return None


def probe(spec: str, conn) -> None:
    """In a forkserver child: load ``spec`` as a worker would; send ``None`` (it loads, or fails in a
    way the real workers must judge) or the one-line reason it does not import."""
    from tpconform.transport import sandbox

    sandbox.set_up(1, 0)
    answer: Optional[str] = None
    try:
        from tpconform.impls.registry import ImplError, ensure_importable_root, load

        ensure_importable_root()
        load(spec)
    except ImplError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, NOT_IMPORTABLE):
            answer = str(exc)
    except BaseException:  # noqa: BLE001, S110 - anything else is for the workers to judge
        pass
    try:
        conn.send(answer)
    finally:
        os._exit(0)


def watch(spec: str, result_fd: int, on_unusable: Optional[Callable[[str], None]] = None) -> threading.Thread:
    """Start the probe of ``spec`` in a daemon thread. When it finds the impl does not import, write
    ``{"unusable": ...}`` and ``{"done": true}`` to ``result_fd`` and end this process (``on_unusable``,
    by default ``os._exit(0)``) — whatever the main thread is doing."""

    def run() -> None:
        from tpconform.transport import forkserver

        ctx = forkserver.context()
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=probe, args=(spec, child), daemon=True)
        try:
            proc.start()
            child.close()
            if not parent.poll(PROBE_TIMEOUT_S):
                return
            answer = parent.recv()
        except (EOFError, OSError):
            return  # the probe died (a crash at import is for the workers to report)
        finally:
            if proc.pid is not None:
                proc.kill()
                proc.join(1.0)
        if answer:
            line = json.dumps({"unusable": answer[:2000]}) + "\n" + json.dumps({"done": True}) + "\n"
            os.write(result_fd, line.encode())
            (on_unusable or (lambda _: os._exit(0)))(answer)

    thread = threading.Thread(target=run, name="tpconform-preflight", daemon=True)
    thread.start()
    return thread
