"""Every family the suite checks, found by its folder: ``conformance/families/<name>/family.py``
defines ``FAMILY``. Adding a family is adding its folder: what else it brings (strategy, reference method,
seeded bugs) is found in it by name (``tpconform.families.folders``)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from tpconform.spec.cases import LayerCase
from tpconform.spec.family import Family

# the single layer first: the rest build on it; then in the order their folders sort
FIRST = ("linear", "subgroups")


@lru_cache(maxsize=None)
def families() -> dict[str, Family]:
    """Every family by name, ``linear`` first."""
    import tpconform.families as package

    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)
    names = [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]
    found: dict[str, Family] = {}
    for name in names:
        try:
            module = importlib.import_module(f"tpconform.families.{name}.family")
        except ModuleNotFoundError as exc:
            if exc.name != f"tpconform.families.{name}.family":
                raise
            continue  # a folder of helpers, not a family
        found[name] = module.FAMILY
    return found


def family(name: str) -> Family:
    return families()[name]


def family_of(case) -> Family:
    """The family a case belongs to (a layer case split into TP groups: ``subgroups``)."""
    if type(case) is LayerCase:
        return family("subgroups" if case.tp_groups > 1 else "linear")
    for fam in families().values():
        if type(case) is fam.case_type:
            return fam
    raise TypeError(f"no family checks cases of type {type(case).__name__}")


def read_token(text: str):
    """The case a replay token names: ``family:fields``, or a bare layer case's fields."""
    name, sep, rest = text.strip().partition(":")
    if sep and name in families():
        return family(name).read_token(rest)
    return LayerCase.from_token(text)
