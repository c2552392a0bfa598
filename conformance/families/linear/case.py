"""The linear family's case: a :class:`LayerCase` is plain data (it crosses to the workers and prints as a
one-line token that replays it), with the memory layouts its input may come in and the worker stages one
example runs (its tensors: :mod:`tpconform.families.linear.tensors`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from tpconform.families.linear.sharding import SHARDINGS, Sharding

if TYPE_CHECKING:
    import torch

KINDS = ("column", "row")

# Memory layouts of the input and the upstream grad (the values are the same in every layout; the
# worker lays them out: ``tpconform.transport.worker.laid_out``). Some need batch dims: see :func:`layouts_for`.
LAYOUTS = {
    "contiguous": "contiguous",
    "strided": "stride 2 in the last dim",
    "narrowed": "narrowed out of a wider last dim (a storage offset, rows further apart than their length)",
    "offset": "contiguous strides at a storage offset (a slice of a larger buffer)",
    "transposed": "the last two dims stored swapped (the transpose of a column-major tensor)",
    "batch_permuted": "the batch dims stored in reverse order ([s, b, h] stored as [b, s, h])",
    "expanded": "the first batch dim expanded from size 1 (stride 0; its values repeat along it)",
}


def layouts_for(batch_dims: int) -> tuple[str, ...]:
    """The layouts that mean something for an input with ``batch_dims`` batch dims, ``contiguous`` first."""
    need = {"transposed": 1, "expanded": 1, "batch_permuted": 2}
    return tuple(name for name in LAYOUTS if batch_dims >= need.get(name, 0))


@dataclass(frozen=True)
class LayerCase:
    kind: str  # "column" or "row"
    world_size: int
    in_features: int
    out_features: int
    batch_shape: tuple[int, ...]
    dtype: str
    bias: bool
    # column: gather_output; row: input_is_parallel
    gather_output: bool = True
    input_is_parallel: bool = False
    layout: str = "contiguous"  # of the input and the upstream grad: a key of LAYOUTS
    scale: float = 1.0
    seed: int = 0
    # ranks per tensor-parallel group; 0 (the default): one group spanning the world. Otherwise the
    # world runs world_size // tp_size independent TP groups of consecutive ranks (see
    # conformance/families/subgroups/verdict.py), and every property must hold in each group on its own.
    tp_size: int = 0
    # the usage protocols' micro-batches: forwards before their backwards, accumulating grads (2-4)
    micro_batches: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.micro_batches <= 4:  # a replay token's: the inputs are scaled by up to 2^(k-1)
            raise ValueError(f"micro_batches must be 1-4, got {self.micro_batches}")

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch  # lazy: a case is plain data, read by the grading host, which imports no torch

        return getattr(torch, self.dtype)

    @property
    def noncontiguous(self) -> bool:
        return self.layout != "contiguous"

    @property
    def sharding(self) -> Sharding:
        """How this kind of layer is sharded (:data:`~tpconform.families.linear.sharding.COLUMN` or ``ROW``)."""
        return SHARDINGS[self.kind]

    @property
    def option(self) -> str:
        return f"{self.sharding.option}={self.sharding.option_value(self)}"

    @property
    def uneven(self) -> bool:
        return self.sharding.split_features(self) % (self.tp_size or self.world_size) != 0

    def describe(self) -> str:
        batch = "x".join(map(str, self.batch_shape)) or "()"
        return (
            f"{self.kind} layer, world_size={self.world_size}, in_features={self.in_features}, "
            f"out_features={self.out_features}, batch_shape={batch}, dtype={self.dtype}, "
            f"bias={self.bias}, {self.option}, layout={self.layout}, "
            f"scale={self.scale}, seed={self.seed}"
            + (f", as {self.tp_groups} TP groups of {self.tp_size}" if self.tp_groups > 1 else "")
            + (f", micro_batches={self.micro_batches}" if self.micro_batches != 2 else "")
        )

    @property
    def tp_groups(self) -> int:
        """How many independent TP groups the world is split into (1: the whole world is one)."""
        return self.world_size // self.tp_size if self.tp_size else 1

    def token(self) -> str:
        """A compact one-line form that :meth:`from_token` reads back (used by replay commands)."""
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            if (f.name, v) in (("tp_size", 0), ("micro_batches", 2)):
                continue  # the defaults (one TP group, two micro-batches): keeps older tokens as they were
            if isinstance(v, tuple):
                v = "x".join(map(str, v)) or "-"
            elif isinstance(v, bool):
                v = int(v)
            parts.append(f"{f.name}={v}")
        return ",".join(parts)

    @classmethod
    def from_token(cls, token: str) -> "LayerCase":
        raw = dict(item.split("=", 1) for item in token.strip().split(","))
        if "noncontiguous" in raw:  # the token of an older version: a strided input or none
            raw.setdefault("layout", "strided" if raw.pop("noncontiguous") == "1" else "contiguous")
        kw: dict = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            v = raw[f.name]
            if f.name == "batch_shape":
                kw[f.name] = tuple(int(s) for s in v.split("x")) if v not in ("-", "") else ()
            elif f.name in ("kind", "dtype", "layout"):
                kw[f.name] = v
            elif f.name == "scale":
                kw[f.name] = float(v)
            elif f.name in ("bias", "gather_output", "input_is_parallel"):
                kw[f.name] = bool(int(v))
            else:
                kw[f.name] = int(v)
        return cls(**kw)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["batch_shape"] = list(self.batch_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LayerCase":
        d = dict(d)
        d["batch_shape"] = tuple(d["batch_shape"])
        if "noncontiguous" in d:  # an older version's case
            d.setdefault("layout", "strided" if d.pop("noncontiguous") else "contiguous")
        return cls(**d)


# What a worker runs for one example after building the layer (and reporting its shards). Each
# property names the stages it reads (``tpconform.families.linear.verdict.NEEDS``), so a test of one property
# runs only those; reports and other callers run them all.
STAGES = ("as_built", "forward", "backward", "second_call", "collective_volume", "train_step", "state_dict",
          "usage", "conversion", "mixed_precision")
# the stages a forward-only layer (capability backward=False) runs: the second call follows the forward
FORWARD_STAGES = ("as_built", "forward", "second_call")


def declared_stages(stages, forward_only: bool) -> tuple[str, ...]:
    """``stages`` (all when ``None``), less those a forward-only layer cannot run."""
    stages = tuple(STAGES if stages is None else stages)
    return tuple(s for s in stages if s in FORWARD_STAGES) if forward_only else stages
