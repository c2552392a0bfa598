"""Which case classes, and which pairs of them, each property was judged on, for every family that says
its classes (``Family.case_classes``: the family says what a case meets, the engine counts), and the
summary lines pytest prints at the end of a run."""

from __future__ import annotations

from typing import Sequence

from tpconform.spec.family import Family

Pair = tuple[str, str]


class Coverage:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}  # by name, in the order first counted
        self.classes: dict[tuple[str, str], set[str]] = {}  # (family, property) -> the case classes it was judged on
        self.pairs: dict[tuple[str, str], set[Pair]] = {}  # (family, property) -> the pairs of classes it was judged on

    def __bool__(self) -> bool:
        return bool(self.classes)

    def count(self, fam: Family, case, props: Sequence[str]) -> None:
        """``case`` (of ``fam``, a family that says its case classes) was judged on each of ``props``."""
        if fam.case_classes is None:
            return
        self.families.setdefault(fam.name, fam)
        classes, pairs = fam.case_classes.of(case), fam.case_classes.pairs_of(case)
        for prop in props:
            self.classes.setdefault((fam.name, prop), set()).update(classes)
            self.pairs.setdefault((fam.name, prop), set()).update(pairs)

    def lines(self, world_sizes: Sequence[int], dtypes: Sequence[str], named: int = 12) -> list[str]:
        """Per property, "n/n case classes, n/n pairs met" of those a run over ``world_sizes`` and
        ``dtypes`` allows for the variants the property ran, and the first ``named`` it missed."""
        lines = []
        for (name, prop), met in sorted(self.classes.items()):
            fam = self.families[name]
            assert fam.case_classes is not None
            variants = [str(v) for v in fam.variants() if str(v) in met]
            wanted = fam.case_classes.applicable(world_sizes, dtypes, variants)
            wanted_pairs = fam.case_classes.applicable_pairs(world_sizes, dtypes, variants)
            met_pairs = self.pairs.get((name, prop), set())
            line = (f"{prop}: {len(wanted & met)}/{len(wanted)} case classes, "
                    f"{len(wanted_pairs & met_pairs)}/{len(wanted_pairs)} pairs met")
            missing = sorted(wanted - met)
            if missing:
                line += f"; classes not met: {_first(missing, named)}"
            missing_pairs = sorted(" x ".join(p) for p in wanted_pairs - met_pairs)
            if missing_pairs:
                line += f"; pairs not met: {_first(missing_pairs, named)}"
            lines.append(line)
        return lines


def _first(names: list[str], n: int) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
