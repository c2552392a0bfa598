"""One example of the spec: a layer case, and the tensors it is checked on.

A :class:`LayerCase` is plain data (it crosses to the workers and prints as a one-line token that
replays it). :func:`make_tensors` turns a case into the exact weight, bias, input and upstream
gradient, deterministically from the case's seed, already rounded to the case's dtype.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

import torch
from tpconform.spec.sharding import SHARDINGS, Sharding

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


def partition(widths: list, total: int, world_size: int) -> list[int]:
    """Each rank's share of a split dim of ``total``, as the ranks' shard widths imply; when they do not
    form a partition (the shards property says why), ``torch.tensor_split``'s. The verdict slices what
    it sends by it and the worker reads its slice by it, so both always agree."""
    if len(widths) == world_size and all(isinstance(w, int) and w >= 0 for w in widths) and sum(widths) == total:
        return list(widths)
    base, extra = divmod(total, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


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

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def noncontiguous(self) -> bool:
        return self.layout != "contiguous"

    @property
    def sharding(self) -> Sharding:
        """How this kind of layer is sharded (:data:`~tpconform.spec.sharding.COLUMN` or ``ROW``)."""
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
            if f.name == "tp_size" and not v:
                continue  # the default: one TP group; keeps single-group tokens as they were
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
# property names the stages it reads (``tpconform.families.linear.properties.NEEDS``), so a test of one property
# runs only those; reports and other callers run them all.
STAGES = ("as_built", "forward", "backward", "second_call", "collective_volume", "train_step", "state_dict",
          "usage", "conversion", "mixed_precision")
# the stages a forward-only layer (capability backward=False) runs: the second call follows the forward
FORWARD_STAGES = ("as_built", "forward", "second_call")


def declared_stages(stages, forward_only: bool) -> tuple[str, ...]:
    """``stages`` (all when ``None``), less those a forward-only layer cannot run."""
    stages = tuple(STAGES if stages is None else stages)
    return tuple(s for s in stages if s in FORWARD_STAGES) if forward_only else stages

# The module converted after construction (stage ``conversion``): built in another dtype, then converted
# to the case's with the method users call. Built in a narrower dtype where one is declared (a reduction
# kept in the construction dtype then loses precision the case's bound sees), else a wider one.
CONVERSIONS = {
    "float64": (("float32", "bfloat16", "float16"), "double"),
    "float32": (("bfloat16", "float16", "float64"), "to"),
    "bfloat16": (("float32", "float64", "float16"), "to"),
    "float16": (("float32", "float64", "bfloat16"), "half"),
}


def conversion_for(dtype: str, declared) -> Optional[tuple[str, str]]:
    """``(build dtype, method)`` for a case of ``dtype``: the layer is built in the first of the
    preferred dtypes the impl declares (``declared``) and converted by ``method`` — ``double``/``half``
    (``layer.double()``, ``layer.half()``) or ``to`` (``layer.to(dtype)``); ``None`` when the impl
    declares no other dtype."""
    preferred, method = CONVERSIONS[dtype]
    build = next((d for d in preferred if d in declared), None)
    return None if build is None else (build, method)

# Mixed precision (stage ``mixed_precision``): float32 parameters (the master weights) and the layer called
# under ``torch.autocast("cpu", dtype=compute)`` on an input in the compute dtype (the output of the layer
# before it in the autocast region), as training loops with automatic mixed precision run it. The compute
# dtype is the case's when it is a 16-bit one, else bfloat16 (float16 where only that is declared).
LOW_PRECISION = ("bfloat16", "float16")
MASTER_DTYPE = "float32"


def mixed_precision_for(dtype: str, declared) -> Optional[tuple[str, str]]:
    """``(parameter dtype, compute dtype)`` of the mixed-precision stage for a case of ``dtype``: float32
    parameters, computing in the case's dtype when it is 16-bit, else in the first 16-bit dtype the impl
    declares (``declared``); ``None`` when the impl does not declare float32 or any 16-bit dtype (it does
    not claim to run mixed precision). The stage's tensors are the case's rounded to the compute dtype
    (:func:`rounded_to`): exact in both dtypes, so autocast's casts of them are exact."""
    if MASTER_DTYPE not in declared:
        return None
    preferred = (dtype,) if dtype in LOW_PRECISION else LOW_PRECISION
    compute = next((d for d in preferred if d in declared), None)
    return None if compute is None else (MASTER_DTYPE, compute)


def rounded_to(t: "CaseTensors", dtype: torch.dtype) -> "CaseTensors":
    """``t`` with every tensor (the training step's too) rounded to ``dtype``, kept in float32 (exact)."""
    def r(x):
        return None if x is None else x.to(dtype).to(torch.float32)

    u = t.update
    update = None if u is None else UpdateTensors(delta_weight=r(u.delta_weight), delta_bias=r(u.delta_bias),
                                                  x=r(u.x), grad_out=r(u.grad_out))
    return CaseTensors(weight=r(t.weight), bias=r(t.bias), x=r(t.x), grad_out=r(t.grad_out), update=update)


# The learning rate of the training step: a power of two, so ``lr·grad`` is exact in every dtype
# (barring underflow) and the step ``w − lr·grad`` costs one rounding.
TRAIN_LR = 2.0**-3


@dataclass
class UpdateTensors:
    """The training step's own tensors (stage ``train_step``): after the first forward/backward
    every rank steps its shards with SGD (``lr`` = :data:`TRAIN_LR`, the grads just computed), adds
    its slice of ``delta_weight`` / ``delta_bias`` in place, then runs ``x`` / ``grad_out`` through."""

    delta_weight: torch.Tensor  # [out, in]
    delta_bias: Optional[torch.Tensor]  # [out] or None
    x: torch.Tensor  # [*batch, in]: the input after the update
    grad_out: torch.Tensor  # [*batch, out]: the upstream grad after the update


@dataclass
class CaseTensors:
    """The exact tensors of one example, in the case's dtype."""

    weight: torch.Tensor  # [out, in]
    bias: Optional[torch.Tensor]  # [out] or None
    x: torch.Tensor  # [*batch, in]
    grad_out: torch.Tensor  # [*batch, out]
    update: Optional[UpdateTensors] = None  # only when the example runs the training step

    def as_dict(self) -> dict:
        d: dict = {"weight": self.weight, "bias": self.bias, "x": self.x, "grad_out": self.grad_out}
        if self.update is not None:
            u = self.update
            d["update"] = {"lr": TRAIN_LR, "delta_weight": u.delta_weight, "delta_bias": u.delta_bias,
                           "x": u.x, "grad_out": u.grad_out}
        return d


def for_workers(case) -> dict:
    """``case`` as a worker is sent it: every field but its ``seed``. A rank learns only what its rank may
    know: from the seed it could regenerate every tensor of the example (the whole input of a sliced
    variant among them) instead of communicating. Replay lines are written by the verdict, which keeps it."""
    d = case.as_dict()
    d.pop("seed", None)
    return d


def make_tensors(case: LayerCase, update: bool = False) -> CaseTensors:
    """Weight, non-zero bias, input and a random (not all-ones) upstream gradient for ``case``;
    with ``update``, the training step's tensors too (their own random stream: the others do not
    change)."""
    gen = torch.Generator().manual_seed(case.seed)
    dt = case.torch_dtype

    def normal(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dt)

    weight = normal(case.out_features, case.in_features, scale=case.in_features**-0.5)
    # a bias bounded away from zero: a zero bias hides the bias-added-on-every-rank bug
    bias = None
    if case.bias:
        magnitude = 0.5 + torch.rand(case.out_features, generator=gen, dtype=torch.float64)
        sign = torch.randint(0, 2, (case.out_features,), generator=gen).double() * 2 - 1
        bias = (magnitude * sign).to(dt)
    x = _repeated(case, normal(*case.batch_shape, case.in_features, scale=case.scale))
    grad_out = _repeated(case, normal(*case.batch_shape, case.out_features))
    return CaseTensors(weight=weight, bias=bias, x=x, grad_out=grad_out,
                       update=make_update(case) if update else None)


def make_update(case: LayerCase) -> UpdateTensors:
    """The training step's delta (the weight's scale; for the bias, its own) and second input and
    upstream grad, deterministic from the case's seed."""
    gen = torch.Generator().manual_seed((case.seed * 2654435761 + 1) % 2**63)
    dt = case.torch_dtype

    def normal(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dt)

    delta_weight = normal(case.out_features, case.in_features, scale=case.in_features**-0.5)
    delta_bias = normal(case.out_features) if case.bias else None
    x = _repeated(case, normal(*case.batch_shape, case.in_features, scale=case.scale))
    grad_out = _repeated(case, normal(*case.batch_shape, case.out_features))
    return UpdateTensors(delta_weight=delta_weight, delta_bias=delta_bias, x=x, grad_out=grad_out)


def _repeated(case: LayerCase, t: torch.Tensor) -> torch.Tensor:
    """``t``, its values repeated along the first batch dim when the case's layout expands that dim
    (an expanded tensor holds one value per position along it)."""
    if case.layout == "expanded" and t.dim() >= 2 and t.shape[0] > 0:
        return t.narrow(0, 0, 1).expand(t.shape).clone()
    return t
