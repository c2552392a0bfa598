"""The merged family's case: plain data that crosses to the workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tpconform.families.linear.case import LayerCase
from tpconform.spec.plain_case import PlainCase


@dataclass(frozen=True)
class MergedCase(PlainCase):
    world_size: int
    in_features: int
    blocks: tuple[int, ...]  # rows of each output block; each a multiple of world_size
    batch_shape: tuple[int, ...]
    dtype: str
    bias: bool
    noncontiguous: bool = False
    scale: float = 1.0
    seed: int = 0

    def layer_case(self) -> LayerCase:
        """The dense layer: one column layer over the stacked blocks, output left sharded."""
        return LayerCase("column", self.world_size, self.in_features, sum(self.blocks), self.batch_shape, self.dtype,
                         self.bias, gather_output=False, layout="strided" if self.noncontiguous else "contiguous",
                         scale=self.scale, seed=self.seed)

    def rows(self, r: int) -> torch.Tensor:
        """Rank ``r``'s rows of the stacked weight: its slice of every block, in block order."""
        parts, start = [], 0
        for n in self.blocks:
            k = n // self.world_size
            parts.append(torch.arange(start + r * k, start + (r + 1) * k))
            start += n
        return torch.cat(parts)

    def describe(self) -> str:
        return (f"merged column layer, blocks {list(self.blocks)}, world_size={self.world_size}, "
                f"in_features={self.in_features}, batch_shape={list(self.batch_shape)}, dtype={self.dtype}, "
                f"bias={self.bias}, noncontiguous={self.noncontiguous}, scale={self.scale}, seed={self.seed}")
