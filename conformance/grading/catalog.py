"""What a grade is made of, over every family: the properties and the variants cells are named by.

The primary family's variants (the single layer's, the first family: ``families/registry.py``) keep their
names (``row-sliced-input``); another family's are ``family/variant`` (``primitives/copy_to``, ``mlp/any``).
Sub-groups check the single layer's properties, so their cells are more variants of those properties
(``subgroups/row-full-input``)."""

from __future__ import annotations

from tpconform.families.registry import families, primary

PRIMARY = primary().name  # the family always scored, whose variants go bare


def variant_name(family: str, variant) -> str:
    v = "any" if variant is None else str(variant)
    return v if family == PRIMARY else f"{family}/{v}"


def _catalog() -> tuple[dict[str, list[str]], dict[str, str], tuple[str, ...]]:
    variants: dict[str, list[str]] = {}  # property -> the variant names it is judged on
    family_of: dict[str, str] = {}  # property -> the family that defines it
    self_reported: dict[str, None] = {}  # properties that declare their evidence measured in the candidate's process
    for name, fam in families().items():
        for prop, declared in fam.properties.items():
            family_of.setdefault(prop, name)
            variants.setdefault(prop, []).extend(variant_name(name, v) for v in fam.variants())
            if declared.self_reported:
                self_reported[prop] = None
    return variants, family_of, tuple(self_reported)


VARIANTS_OF, FAMILY_OF, SELF_REPORTED = _catalog()
ALL_PROPERTIES = tuple(VARIANTS_OF)
ALL_VARIANTS = tuple(dict.fromkeys(v for vs in VARIANTS_OF.values() for v in vs))
PRIMARY_VARIANTS = tuple(variant_name(PRIMARY, v) for v in primary().variants())
