"""Which implementations ``--impl`` can name, and how an ``--impl`` string becomes an impl object.

``--impl`` accepts, in this order:

1. a registry name: a built-in entry below, or one another package registers in the
   ``tpconform.impls`` entry-point group (``name = "pkg.module:ImplClass"``);
2. a path to a ``.py`` file in the simple-module convention (see ``tpconform.impls.simple_module``);
3. ``package.module:object`` — an impl class or instance importable from ``sys.path``;
4. ``package.module`` — an importable module in the simple-module convention.

This module only names import targets. :func:`load` imports candidate code and so runs in worker
processes only; the verdict process uses :func:`available` and never calls :func:`load`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from functools import lru_cache
from importlib.metadata import entry_points

from tpconform.impls.entries import Entry, ImplError  # noqa: F401 - ImplError: the registry's error, imported from here
from tpconform.impls.peers import peers

ENTRY_POINT_GROUP = "tpconform.impls"


# the reference and its declared limits; the peers (real libraries) are found by their files (impls/peers)
BUILTIN: tuple[Entry, ...] = (
    Entry("reference", "tpconform.impls.reference:ReferenceImpl", "the built-in reference layers"),
    Entry("reference-even-padded", "tpconform.impls.padded:PaddedImpl",
          "the reference with ColossalAI's shape: even-only linear layers, a padded embedding (declared per family)"),
    # the reference under a declared limit (impls/limited.py): each passes what it declares
    Entry("reference-forward-only", "tpconform.impls.limited:ForwardOnlyImpl",
          "the reference as inference layers: no backward (backward=False), as vLLM's"),
    Entry("reference-equal-blocks", "tpconform.impls.limited:EqualBlocksImpl",
          "the reference with a packed merged layer that takes equal blocks only (equal_blocks, merged)"),
    Entry("reference-two-primitives", "tpconform.impls.limited:TwoPrimitivesImpl",
          "the reference offering copy-to and reduce-from only (primitives), as transformers' TP"),
)


def _zoo_entries() -> tuple[Entry, ...]:
    try:
        from tpconform.impls.zoo import ENTRIES
    except ImportError:  # pragma: no cover - the zoo ships with the package
        return ()
    return tuple(ENTRIES)


def available() -> dict[str, Entry]:
    """Every registry name: built-ins, the peers (each found by its file, ``tpconform.impls.peers``), the
    seeded-bug zoo, then entry points of other packages."""
    entries = {e.name: e for e in BUILTIN + tuple(p.entry for p in peers().values()) + _zoo_entries()}
    for entry in _entry_point_entries():
        entries.setdefault(entry.name, entry)
    return entries


@lru_cache(maxsize=None)
def _entry_point_entries() -> tuple[Entry, ...]:
    """Other packages' registry entries. Finding them reads every installed distribution's metadata
    (~40 ms, seconds under load): once per process, and once for every worker, in the forkserver
    (``tpconform.transport.forkserver_init``), whose children inherit it."""
    return tuple(Entry(ep.name, ep.value, f"entry point from {ep.dist.name if ep.dist else '?'}")
                 for ep in entry_points(group=ENTRY_POINT_GROUP))


def classify(spec: str) -> tuple[str, str]:
    """How ``spec`` will be loaded: ``("registry"|"file"|"object"|"module", target)``.

    Cheap checks only (no candidate import), so the verdict process can reject a typo at once.
    """
    entries = available()
    if spec in entries:
        return "registry", entries[spec].target
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise ImplError(f"--impl={spec}: no such file {path}")
        return "file", path
    module = spec.split(":", 1)[0]
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ImplError(f"--impl={spec}: unknown impl — not a registry name (see --list-impls), a .py file, "
                        "or module:object")
    # Only the top-level package is looked up: finding ``a.b`` would import ``a`` (running candidate
    # code in the verdict process). A missing submodule is reported by the worker that loads it.
    top = module.split(".", 1)[0]
    try:  # on sys.path, or in the working directory, which the workers add (ensure_importable_root)
        found = importlib.util.find_spec(top) or importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ImplError(
            f"--impl={spec}: unknown impl — not a registry name (see --list-impls), "
            f"not a .py file, and no importable module {top!r}"
        )
    return ("object" if ":" in spec else "module"), spec


def load(spec: str):
    """Import and instantiate the impl named by ``spec`` (worker processes only)."""
    from tpconform.impls.protocol import TensorParallelImpl
    from tpconform.impls.simple_module import SimpleModuleImpl, check_loadable, load_module_file

    how, target = classify(spec)
    if how == "file":
        module = load_module_file(target)
        check_loadable(module, os.path.basename(target))
        return SimpleModuleImpl(module, name=os.path.basename(target))
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ImplError(f"--impl={spec}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    if not attr:
        check_loadable(module, module_name)
        return SimpleModuleImpl(module, name=module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ImplError(f"--impl={spec}: module {module_name} has no attribute {attr!r}") from None
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ImplError(f"--impl={spec}: {attr}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, TensorParallelImpl) and not (hasattr(obj, "column") and hasattr(obj, "row")):
        if hasattr(obj, "ColumnParallelLinear") or hasattr(obj, "RowParallelLinear"):
            impl = SimpleModuleImpl(obj, name=spec)  # it lacks one of them: it says so
            check_loadable(obj, spec, named_module=False)
            return impl
        raise ImplError(f"--impl={spec}: {attr} is neither a TensorParallelImpl nor has column()/row() builders")
    if how == "registry":
        obj.name = spec
    return obj


def ensure_importable_root() -> None:
    """Make the current directory importable (as pytest's rootdir is) for module specs."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
