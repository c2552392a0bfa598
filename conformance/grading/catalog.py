"""What a grade is made of, over every family: the properties and the variants cells are named by.

The primary family's variants (the single layer's, the first family: ``families/registry.py``) keep their
names (``row-sliced-input``); another family's are ``family/variant`` (``primitives/copy_to``, ``mlp/any``).
Sub-groups check the single layer's properties, so their cells are more variants of those properties
(``subgroups/row-full-input``).

Both sides of grading read it: the verdict (in the sandbox, where torch is loaded anyway) and the
host, which checks records and writes reports without importing torch. The catalog is plain data
computed from the families' folders; a process that has not imported torch gets it from a child
process (``python -m tpconform.grading.catalog`` prints it as JSON), once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache


def variant_name(family: str, variant, primary: str | None = None) -> str:
    """A cell's variant name: bare for the primary family (``primary``, else the catalog's), else ``family/variant``."""
    v = "any" if variant is None else str(variant)
    return v if family == (primary or catalog().primary) else f"{family}/{v}"


@dataclass(frozen=True)
class Catalog:
    variants_of: dict  # property -> the variant names it is judged on
    family_of: dict  # property -> the family that defines it
    self_reported: tuple  # properties that declare their evidence measured in the candidate's process
    measured_outside: tuple  # checks measured outside the candidate, only where the sandbox can (else n/a)
    primary: str  # the primary family (the single layer: always scored, its variants go bare)
    primary_variants: tuple  # the primary family's variant names, in order
    families: tuple  # every family's name, in the registry's order

    @property
    def all_properties(self) -> tuple:
        return tuple(self.variants_of)

    @property
    def all_variants(self) -> tuple:
        return tuple(dict.fromkeys(v for vs in self.variants_of.values() for v in vs))

    @property
    def primary_properties(self) -> tuple:
        """The primary family's properties, in spec order."""
        return tuple(p for p, f in self.family_of.items() if f == self.primary)


def build() -> dict:
    """The catalog from the families themselves (imports them, and so torch)."""
    from tpconform.families.linear.verdict import MEASURED_OUTSIDE
    from tpconform.families.registry import families, primary

    first = primary().name

    variants: dict[str, list[str]] = {}
    family_of: dict[str, str] = {}
    self_reported: dict[str, None] = {}
    for fam_name, fam in families().items():
        for prop, declared in fam.properties.items():
            family_of.setdefault(prop, fam_name)
            variants.setdefault(prop, []).extend(variant_name(fam_name, v, first) for v in fam.variants())
            if declared.self_reported:
                self_reported[prop] = None
    return {"variants_of": variants, "family_of": family_of, "self_reported": list(self_reported),
            "measured_outside": list(MEASURED_OUTSIDE),
            "primary": first, "primary_variants": [variant_name(first, v, first) for v in primary().variants()],
            "families": list(families())}


def _from_child() -> dict:
    """:func:`build` run in a child process: this one never imports torch."""
    import tpconform

    root = os.path.dirname(os.path.dirname(os.path.abspath(tpconform.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-m", "tpconform.grading.catalog"], env=env, capture_output=True, text=True,
                       timeout=600, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"the grading catalog could not be built: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout)


@lru_cache(maxsize=None)
def catalog() -> Catalog:
    data = build() if "torch" in sys.modules else _from_child()  # in this process where torch is paid for already
    return Catalog({p: tuple(v) for p, v in data["variants_of"].items()}, dict(data["family_of"]),
                   tuple(data["self_reported"]), tuple(data["measured_outside"]), data["primary"], tuple(data["primary_variants"]),
                   tuple(data["families"]))


_NAMES = {"VARIANTS_OF": "variants_of", "FAMILY_OF": "family_of", "SELF_REPORTED": "self_reported",
          "ALL_PROPERTIES": "all_properties", "ALL_VARIANTS": "all_variants", "PRIMARY": "primary",
          "PRIMARY_VARIANTS": "primary_variants"}


def __getattr__(name: str):
    """The catalog's parts by their former names (``catalog.FAMILY_OF``), computed on first use."""
    if name in _NAMES:
        return getattr(catalog(), _NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    json.dump(build(), sys.stdout)
