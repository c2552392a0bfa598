"""What the class view counts as "the same bug" across submissions (no dependencies: the host's report
writer uses it without the verdict stack; :mod:`tpconform.grading.failures` makes signatures)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"\d+(\.\d+)?(e-?\d+)?")
_LIST = re.compile(r"[\[(][\d\s,.]*[\])]")  # a shape or index: "[2, 4, 3]" and "[4, 11]" are one


@dataclass(frozen=True)
class Signature:
    kind: str  # "property" | "raised" | "shape" | "crash" | "hang"
    property: str  # "*" for raised / shape / crash / hang
    case_class: str
    cause: str

    def key(self) -> str:
        """The same text for the same bug in any submission, at any world size (numbers are masked:
        "off by 1× the bias" and "off by 3× the bias" are one bug); the class view counts by it."""
        text = _LIST.sub("[…]", f"{self.kind} | {self.property} | {self.case_class} | {self.cause}")
        return _NUMBER.sub("#", text)
