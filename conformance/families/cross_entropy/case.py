"""The vocab-parallel cross-entropy family's case: plain data that crosses to the workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.spec.plain_case import PlainCase


@dataclass(frozen=True)
class CrossEntropyCase(PlainCase):
    world_size: int
    vocab: int  # a multiple of world_size: rank r holds logits r·vocab/p … (r+1)·vocab/p
    batch_shape: tuple[int, ...]  # the shape of the targets (and of the loss)
    dtype: str
    scale: float = 1.0  # the logits' spread: large ones need the max subtracted
    seed: int = 0

    def columns(self, r: int) -> slice:
        n = self.vocab // self.world_size
        return slice(r * n, (r + 1) * n)

    def describe(self) -> str:
        return (f"vocab-parallel cross entropy, world_size={self.world_size}, vocab={self.vocab}, targets shape "
                f"{list(self.batch_shape)}, dtype={self.dtype}, scale={self.scale}, seed={self.seed}")
