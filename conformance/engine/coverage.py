"""Which case classes, and which pairs of them, each property of the linear family was judged on
(``tpconform.families.linear.case_classes``), and the summary lines pytest prints at the end of a run."""

from __future__ import annotations

from typing import Sequence

from tpconform.families.linear.case_classes import applicable_classes, applicable_pairs, classes_of, pairs_met
from tpconform.families.linear.strategy import VARIANTS
from tpconform.strategies.pairwise import Pair


class Coverage:
    def __init__(self) -> None:
        self.classes: dict[str, set[str]] = {}  # property -> the case classes it was judged on
        self.pairs: dict[str, set[Pair]] = {}  # property -> the pairs of classes it was judged on

    def __bool__(self) -> bool:
        return bool(self.classes)

    def count(self, case, props: Sequence[str]) -> None:
        """``case`` (a linear ``LayerCase``) was judged on each of ``props``."""
        classes, pairs = classes_of(case), pairs_met(case)
        for prop in props:
            self.classes.setdefault(prop, set()).update(classes)
            self.pairs.setdefault(prop, set()).update(pairs)

    def lines(self, world_sizes: Sequence[int], dtypes: Sequence[str], named: int = 12) -> list[str]:
        """Per property, "n/n case classes, n/n pairs met" of those a run over ``world_sizes`` and
        ``dtypes`` allows for the variants the property ran, and the first ``named`` it missed."""
        lines = []
        for prop, met in sorted(self.classes.items()):
            variants = [str(v) for v in VARIANTS if str(v) in met]
            wanted = applicable_classes(world_sizes, dtypes, variants)
            wanted_pairs = applicable_pairs(world_sizes, dtypes, variants)
            met_pairs = self.pairs.get(prop, set())
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
