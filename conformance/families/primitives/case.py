"""The primitives family's case: plain data that crosses to the workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.impls.protocol import ALL_PRIMITIVES
from tpconform.spec.plain_case import PlainCase

PRIMITIVES = ALL_PRIMITIVES  # one list: what an impl may declare (capability primitives) is what is checked
LAYOUTS = ("contiguous", "strided", "transposed")


@dataclass(frozen=True)
class PrimitiveCase(PlainCase):
    world_size: int
    primitive: str
    shape: tuple[int, ...]  # the input's shape on each rank
    dtype: str
    layout: str = "contiguous"
    seed: int = 0

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.primitive == "gather_from":
            return (*self.shape[:-1], self.shape[-1] * self.world_size)
        return self.shape  # scatter_to: the full grad; each rank back-propagates its slice

    def describe(self) -> str:
        return (f"{self.primitive}, world_size={self.world_size}, input shape {list(self.shape)} on each rank, "
                f"dtype={self.dtype}, layout={self.layout}, seed={self.seed}")
