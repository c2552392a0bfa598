"""Every family the suite checks, found by its folder: ``conformance/families/<name>/family.py``
defines ``FAMILY``. Adding a family is adding its folder: what else it brings (strategy, reference method,
seeded bugs) is found in it by name (``tpconform.families.folders``).
Families sort by their ``order`` (declared in their folders), then by name; the first is the primary one."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

import tpconform.families as package
from tpconform.spec.family import Family


@lru_cache(maxsize=None)
def families() -> dict[str, Family]:
    """Every family by name, in their ``order`` (then by name): the primary one first."""
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)
    found: dict[str, Family] = {}
    for name in names:
        try:
            module = importlib.import_module(f"tpconform.families.{name}.family")
        except ModuleNotFoundError as exc:
            if exc.name != f"tpconform.families.{name}.family":
                raise
            continue  # a folder of helpers, not a family
        found[name] = module.FAMILY
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def family(name: str) -> Family:
    return families()[name]


def primary() -> Family:
    """The first family (the single layer): its variants and replay tokens go bare, and it is the one
    checked where no family is named."""
    return next(iter(families().values()))


def family_of(case) -> Family:
    """The family a case belongs to (the first that claims it: ``Family.claims``)."""
    for fam in families().values():
        if fam.claims(case):
            return fam
    raise TypeError(f"no family checks cases of type {type(case).__name__}")


def read_token(text: str):
    """The case a replay token names: ``family:fields``, or a bare case of the primary family."""
    name, sep, rest = text.strip().partition(":")
    if sep and name in families():
        return family(name).read_token(rest)
    return primary().read_token(text)
