"""Compare one returned tensor with its float64 ground truth under a per-element bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Mismatch:
    """Where and by how much a tensor missed its expected value."""

    summary: str
    max_abs_error: float = float("nan")
    max_rel_error: float = float("nan")
    index: tuple = ()
    actual: float = float("nan")
    expected: float = float("nan")
    tolerance: float = float("nan")
    bad: int = 0
    total: int = 0

    def __str__(self) -> str:
        if not self.total:
            return self.summary
        return (
            f"{self.summary}: {self.bad} of {self.total} elements outside tolerance, "
            f"max abs error {self.max_abs_error:.3g}; worst at index {self.index}: got "
            f"{self.actual:.6g}, expected {self.expected:.6g} (abs error {abs(self.actual - self.expected):.3g}, "
            f"rel error {self.max_rel_error:.3g}, tolerance {self.tolerance:.3g})"
        )


def compare(actual: Optional[torch.Tensor], expected: torch.Tensor, tolerance: torch.Tensor,
            what: str) -> Optional[Mismatch]:
    """``None`` when ``actual`` has ``expected``'s shape and is within ``tolerance`` everywhere."""
    if actual is None:
        return Mismatch(f"{what} is missing (None)")
    if tuple(actual.shape) != tuple(expected.shape):
        return Mismatch(f"{what} has shape {list(actual.shape)}, expected {list(expected.shape)}")
    if expected.numel() == 0:
        return None
    a = actual.double()
    err = (a - expected).abs()
    err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
    bad = err > tolerance
    if actual.dtype.is_floating_point:
        # a bound past the dtype's largest value says the dtype may not hold the result (a 16-bit grad through a
        # one-wide norm): an overflow to inf, or the NaN of inf - inf, is within it, as any finite value is
        bad &= tolerance < torch.finfo(actual.dtype).max
    if not bool(bad.any()):
        return None
    # the worst element among those outside tolerance (an exact element of an exact move is 0 / 0: not a candidate)
    ratio = torch.where(bad, err / tolerance, torch.zeros_like(err))
    flat = int(torch.argmax(torch.where(torch.isnan(ratio), torch.full_like(ratio, float("inf")), ratio)))
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), expected.shape))
    exp_v, act_v = float(expected[index]), float(a[index])
    abs_e = float(err[index])
    return Mismatch(
        summary=what,
        max_abs_error=float(err.max()),
        max_rel_error=abs_e / abs(exp_v) if exp_v else float("inf"),
        index=index,
        actual=act_v,
        expected=exp_v,
        tolerance=float(tolerance[index]),
        bad=int(bad.sum()),
        total=expected.numel(),
    )
