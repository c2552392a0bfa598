"""The mlp family's case: plain data that crosses to the workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.spec.plain_case import PlainCase

ACTIVATIONS = ("relu", "gelu")


@dataclass(frozen=True)
class MLPCase(PlainCase):
    world_size: int
    in_features: int  # the model width: the MLP's input and output
    hidden: int  # the inner width, sharded over the ranks
    batch_shape: tuple[int, ...]
    dtype: str
    bias: bool
    activation: str = "gelu"
    noncontiguous: bool = False
    scale: float = 1.0
    seed: int = 0

    @property
    def uneven(self) -> bool:
        return self.hidden % self.world_size != 0

    def describe(self) -> str:
        batch = "x".join(map(str, self.batch_shape)) or "()"
        return (f"MLP column(gather_output=False) → {self.activation} → row(input_is_parallel=True), "
                f"world_size={self.world_size}, in_features={self.in_features}, hidden={self.hidden}, "
                f"batch_shape={batch}, dtype={self.dtype}, bias={self.bias}, "
                f"noncontiguous={self.noncontiguous}, scale={self.scale}, seed={self.seed}")
