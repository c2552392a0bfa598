"""What a dense ``nn.Linear`` computes, in float64: the ground truth every property compares to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tpconform.families.linear.tensors import CaseTensors


@dataclass
class DenseResult:
    output: torch.Tensor  # [*batch, out]
    input_grad: torch.Tensor  # [*batch, in]
    weight_grad: torch.Tensor  # [out, in]
    bias_grad: Optional[torch.Tensor]  # [out]


def dense_linear(t: CaseTensors) -> DenseResult:
    """Forward and backward of ``y = x Wᵀ + b`` in float64 from the (already rounded) inputs."""
    w, x, g = t.weight.double(), t.x.double(), t.grad_out.double()
    y = x @ w.T
    if t.bias is not None:
        y = y + t.bias.double()
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    return DenseResult(
        output=y,
        input_grad=g @ w,
        weight_grad=g2.T @ x2,
        bias_grad=None if t.bias is None else g2.sum(0),
    )
