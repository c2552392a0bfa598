"""The tensors of one linear example: the exact weight, bias, input and upstream gradient, deterministic
from the case's seed and already rounded to its dtype (:func:`make_tensors`), the training step's own
(:class:`UpdateTensors`), and the dtypes the conversion and mixed-precision stages use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tpconform.families.linear.case import LayerCase

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
