"""A seeded bug, as the zoo lists it: metadata only (its code is a module that only workers import).

The zoo (``tpconform.impls.zoo``) lists the single layer's bugs and finds every other family's in its
folder, ``conformance/families/<name>/bugs/__init__.py`` (``BUGS``), by convention."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.impls.entries import Entry


@dataclass(frozen=True)
class SeededBug:
    name: str
    module: str
    summary: str
    caught_by: str  # a property of its family (tpconform.families.linear.verdict.SPEC for the single layer)
    variant: str  # the variant (see tpconform.strategies.VARIANTS) whose test must catch it
    cause: str = ""  # words the failure's "likely cause" line must contain ("" checks nothing)
    symptom: str = "violation"  # "violation": the property itself fails; "crash": the example raises or hangs
    world_sizes: tuple[int, ...] = (1, 2, 3, 4)  # what the self-test searches (the bug may need >= 3)
    # caught on its family's anchors (``Family.anchors``), whatever the random draws: its configs (sequence or
    # loss parallelism, tied embeddings...) are ones a grade's few draws a variant can miss
    anchored: bool = False

    @property
    def entry(self) -> Entry:
        return Entry(self.name, f"{self.module}:Impl", self.summary, correct=False)
