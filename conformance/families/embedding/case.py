"""The embedding family's case: plain data that crosses to the workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.spec.plain_case import PlainCase


@dataclass(frozen=True)
class EmbeddingCase(PlainCase):
    world_size: int
    vocab: int
    dim: int
    batch_shape: tuple[int, ...]  # the shape of the ids
    dtype: str
    seed: int = 0

    @property
    def uneven(self) -> bool:
        return self.vocab % self.world_size != 0

    def describe(self) -> str:
        return (f"vocab-parallel embedding, world_size={self.world_size}, vocab={self.vocab}, dim={self.dim}, "
                f"ids shape {list(self.batch_shape)}, dtype={self.dtype}, seed={self.seed}")
