"""Tell an impl that does not import in milliseconds: read its imports before anything heavy.

The grading verdict process (:mod:`tpconform.grading.verdict`) and the pytest plugin (at configure) call
:func:`static_reason` first, before they start the forkserver or import torch (on a loaded machine the torch
import alone takes tens of seconds). It reads the entry file's leading imports without running them: a syntax error, or an
unconditional top-level ``import`` of a module that exists neither in the environment nor in the
submission, is what the first worker would report, in its words. It follows the submission's own
modules (their leading imports too) and stops at the first statement that could change what later
imports find — anything but a docstring or an import of the environment's modules — so it never
calls a file unimportable that imports. Everything else (a missing name, an error the module raises
while it runs) is left to the first worker's ``describe``, as before; candidate code never runs in
the verdict process.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import os
import sys
from typing import Optional

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
