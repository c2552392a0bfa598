"""The dense ``nn.Linear`` a library's own constructor splits (DeepSpeed, ColossalAI take a module)."""

from __future__ import annotations

import torch
from torch import nn


def dense_linear(weight, bias) -> nn.Linear:
    """An ``nn.Linear`` in ``weight``'s dtype holding ``weight`` and ``bias`` (``None``: no bias)."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear
