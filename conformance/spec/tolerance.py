"""The tolerance model: a worst-case rounding-error bound, computed per element.

Every quantity the suite compares is a sum of products, ``s = Σₖ aₖ·bₖ`` (plus a bias for the
output). For any order of summation, floating-point arithmetic with unit roundoff ``u`` gives
``|ŝ − s| ≤ γₙ · Σₖ |aₖ·bₖ|`` with ``γₙ = n·u / (1 − n·u)`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, §3.1). A tensor-parallel layer computes the same sum split into per-rank
partial sums that are rounded to the dtype, combined by a collective (at most ``world_size − 1``
further additions) and, for the output, a bias addition and a final cast. So the bound is::

    |actual − exact| ≤ SAFETY · (n·u_acc + r·u_dtype + n·u_f64) · M  +  r · tiny_dtype

- ``n``: the reduction length (in_features for the output, out_features for the input grad, the
  number of batch rows for the weight and bias grads);
- ``M``: the magnitude ``Σₖ |aₖ·bₖ| (+ |bias|)``, per element, computed from the exact inputs;
- ``u_acc``: the unit roundoff of the accumulator. PyTorch accumulates float16/bfloat16 sums in
  float32 (its "opmath" type), so ``u_acc`` is float32's for those dtypes and the dtype's own for
  float32/float64 — an implementation that accumulates a long reduction in 16 bits is outside this
  model (and is what the bf16-computation seeded bug does);
- ``r = world_size + 3``: the roundings to the dtype between the exact sum and the returned value
  (each partial sum, each addition in the collective, the bias addition, the output cast);
- ``n·u_f64``: the error of the float64 ground truth itself;
- ``tiny``: the smallest subnormal of the dtype, covering underflow in each of the ``r`` roundings;
- ``SAFETY = 2`` covers the second-order terms of ``γₙ`` while ``n·u ≤ 1/2``.

The inputs are rounded to the dtype *before* the float64 ground truth is computed, so input
quantisation is not counted as error. The bound is sound for every seed; it is loose (worst case),
which is what makes it safe to use on every example, and still tens to thousands of times tighter
than the error of a float32 layer that secretly computes in bfloat16, at the suite's reduction
lengths (≤ 32; the margin shrinks like n^1.5, see docs/TOLERANCE.md for the derivation, the
assumptions and the evidence).
"""

from __future__ import annotations

import torch

SAFETY = 2.0
_F64_U = torch.finfo(torch.float64).eps / 2
_F32_U = torch.finfo(torch.float32).eps / 2


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def accumulator_roundoff(dtype: torch.dtype) -> float:
    return min(unit_roundoff(dtype), _F32_U) if dtype != torch.float64 else _F64_U


def smallest_subnormal(dtype: torch.dtype) -> float:
    info = torch.finfo(dtype)
    return info.smallest_normal * info.eps


def roundings(world_size: int) -> int:
    return world_size + 3


def bound(magnitude: torch.Tensor, reduction_length: int, dtype: torch.dtype, world_size: int) -> torch.Tensor:
    """Per-element bound on ``|actual − exact|`` for a sum of ``reduction_length`` products."""
    r = roundings(world_size)
    n = max(reduction_length, 1)
    rel = SAFETY * (n * accumulator_roundoff(dtype) + r * unit_roundoff(dtype) + n * _F64_U)
    return rel * magnitude.double() + r * smallest_subnormal(dtype)


def output_bound(x, weight, bias, dtype, world_size):
    m = x.double().abs() @ weight.double().abs().T
    if bias is not None:
        m = m + bias.double().abs()
    return bound(m, weight.shape[1], dtype, world_size)


def input_grad_bound(grad_out, weight, dtype, world_size):
    m = grad_out.double().abs() @ weight.double().abs()
    return bound(m, weight.shape[0], dtype, world_size)


def weight_grad_bound(grad_out, x, dtype, world_size):
    g2 = grad_out.double().abs().reshape(-1, grad_out.shape[-1])
    x2 = x.double().abs().reshape(-1, x.shape[-1])
    return bound(g2.T @ x2, g2.shape[0], dtype, world_size)


def bias_grad_bound(grad_out, dtype, world_size):
    g2 = grad_out.double().abs().reshape(-1, grad_out.shape[-1])
    return bound(g2.sum(0), g2.shape[0], dtype, world_size)


def update_error(weight, lr: float, grad, grad_bound, delta, dtype) -> torch.Tensor:
    """Per-element bound on ``|ŵ − w′|``, the training step's error: ``w′ = w − lr·g + Δ`` exactly
    (``g`` the float64 dense grad), while a correct layer steps with its own grad ``ĝ``
    (``|ĝ − g| ≤ grad_bound``) and rounds to ``dtype`` after each of at most three operations
    (``lr·ĝ``, exact for a power-of-two ``lr`` barring underflow; ``w − lr·ĝ``; ``+ Δ``), each by at most
    ``u·(|w| + lr·|ĝ| + |Δ|)`` to first order (``SAFETY`` covers the second order and the float64
    reference's own roundings)::

        |ŵ − w′| ≤ lr·grad_bound + SAFETY·3·u_dtype·(|w| + lr·(|g| + grad_bound) + |Δ|) + 3·tiny_dtype
    """
    u = unit_roundoff(dtype)
    grad_bound = grad_bound.double()
    magnitude = weight.double().abs() + lr * (grad.double().abs() + grad_bound) + delta.double().abs()
    return lr * grad_bound + SAFETY * 3 * u * magnitude + 3 * smallest_subnormal(dtype)


def cast_error(magnitude: torch.Tensor, other_abs_sum, dtype: torch.dtype) -> torch.Tensor:
    """Per-element bound on what rounding one operand of every product to ``dtype`` does to a sum of
    products — autocast casting a float32 parameter that the training step moved off the ``dtype`` grid
    to the compute dtype before the matmul. A rounded operand is ``fl(a) = a·(1 + δ) + η`` with
    ``|δ| ≤ u`` and ``|η| ≤ tiny / 2`` (the subnormal range), so::

        |Σₖ fl(aₖ)·bₖ − Σₖ aₖ·bₖ| ≤ u·Σₖ |aₖ·bₖ| + tiny·Σₖ |bₖ|/2  ≤  SAFETY·u·M + tiny·Σₖ |bₖ|

    ``magnitude`` is ``M`` (with the rounded operands' magnitudes), ``other_abs_sum`` is ``Σₖ |bₖ|`` per
    element (the other factor's, unrounded); ``SAFETY`` covers the second-order terms. It adds to the bound
    of the sum computed in ``dtype`` from the rounded operands (:func:`bound`)."""
    return SAFETY * unit_roundoff(dtype) * magnitude.double() + smallest_subnormal(dtype) * other_abs_sum
