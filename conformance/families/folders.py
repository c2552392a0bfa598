"""The family folders and what each brings, found by convention (no central list, no torch import).

A family is a folder ``conformance/families/<name>/``; what it brings beyond its ``family.py`` is
found by a module's name in it, each read by the one place that needs it:

- ``strategy.py``: its Hypothesis strategies (``__all__``), re-exported by ``tpconform.strategies``;
- ``reference.py``: a ``Reference`` mixin, the reference impl's optional method for the family,
  composed into ``tpconform.impls.reference.ReferenceImpl``;
- ``bugs/``: its seeded bugs, listed in ``bugs/bugs.toml`` (metadata only, read by :func:`seeded_bugs`
  into the package's ``BUGS``; each bug a module beside it, imported by workers alone), listed by
  ``tpconform.impls.zoo``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from types import ModuleType

from tpconform.impls.seeded import SeededBug
from tpconform.spec.options import read_toml


def names() -> list[str]:
    """Every family folder's name, sorted."""
    import tpconform.families as package

    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)


def each(module: str) -> list[tuple[str, ModuleType]]:
    """``(family, module)`` for every family folder that has ``module`` (``"strategy"``, ``"bugs"``...)."""
    found = []
    for name in names():
        qualified = f"tpconform.families.{name}.{module}"
        try:
            found.append((name, importlib.import_module(qualified)))
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
    return found


def seeded_bugs(package: str) -> tuple[SeededBug, ...]:
    """A family's seeded bugs, as its ``bugs/bugs.toml`` lists them (a table per bug, named by its registry
    name; ``module`` relative to the ``bugs`` package ``package``, or a whole dotted name for another
    family's bug; every other key a :class:`SeededBug` field). A family's ``bugs/__init__.py`` is
    ``BUGS = seeded_bugs(__name__)``: its metadata is data, its code the modules beside it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package}: not a package"
    folder = list(spec.submodule_search_locations)[0]
    out = []
    for name, fields in read_toml(os.path.join(folder, "bugs.toml")).items():
        module = fields.pop("module")
        fields["world_sizes"] = tuple(fields.get("world_sizes", SeededBug.world_sizes))
        out.append(SeededBug(name, module if "." in module else f"{package}.{module}", **fields))
    return tuple(out)
