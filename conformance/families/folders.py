"""The family folders and what each brings, found by convention (no central list, no torch import).

A family is a folder ``conformance/families/<name>/``; what it brings beyond its ``family.py`` is
found by a module's name in it, each read by the one place that needs it:

- ``strategy.py``: its Hypothesis strategies (``__all__``), re-exported by ``tpconform.strategies``;
- ``reference.py``: a ``Reference`` mixin, the reference impl's optional method for the family,
  composed into ``tpconform.impls.reference.ReferenceImpl``;
- ``bugs/``: its seeded bugs (``BUGS``, metadata only; each bug a module beside it), listed by
  ``tpconform.impls.zoo``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


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
