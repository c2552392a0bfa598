"""Worst-case error bounds for the two-layer MLP ``y = φ(x W1ᵀ + b1) W2ᵀ + b2``, forward and backward.

Built only from :func:`tpconform.spec.tolerance.bound` (one linear layer's rounding bound, see there)
and the activation's constants, by propagating each stage's bound through the next:

- a stage that computes ``fl(ũ · B)`` from an input ``ũ`` already off by at most ``E_u`` is off by
  at most ``bound((|u| + E_u)·|B|) + E_u·|B|``: its own rounding on the perturbed magnitude, plus
  the input error carried through the (exact) linear map;
- the activation: ``|φ(h̃) − φ(h)| ≤ L·|h̃ − h|`` (``L`` its Lipschitz constant), plus its own
  evaluation error; its derivative, for the backward: ``|φ'(h̃) − φ'(h)| ≤ L'·|h̃ − h|``.

Constants: ReLU: ``L = 1``, evaluated exactly; its derivative jumps at 0, so where ``|h| ≤ E_h``
(the pre-activation's bound) the backward may gate either way and the bound there is
``|g_a| + E_ga``. GELU: ``L = max φ' ≈ 1.1289 → 1.13``, ``L' = max |φ''| = 2·pdf(0) ≈ 0.7979 → 0.8``;
its evaluation (in float32 "opmath" for 16-bit dtypes, as PyTorch does) is assumed accurate to
``GELU_ULPS`` accumulator ulps of ``|h|`` (the ``1 + erf`` term loses relative accuracy for
negative ``h``, so the error is stated against ``|h|``, not ``|φ(h)|``) plus one rounding to the
dtype. As in :mod:`tpconform.spec.tolerance`, ``SAFETY = 2`` covers second-order terms and the ground
truth is float64 from the exact (already rounded) inputs.
"""

from __future__ import annotations

import torch
from tpconform.spec import tolerance as tol

LIPSCHITZ = {"relu": 1.0, "gelu": 1.13}
DERIVATIVE_LIPSCHITZ = {"gelu": 0.8}
GELU_ULPS = 8


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def _activation_error(act: str, h_mag, e_h, a_mag, dtype, ws):
    """Bound on ``|fl(φ(h̃)) − φ(h)|`` given ``|h̃ − h| ≤ e_h``."""
    carried = LIPSCHITZ[act] * e_h
    if act == "relu":
        return carried  # max(h̃, 0) is exact and 1-Lipschitz
    u_acc, u = tol.accumulator_roundoff(dtype), tol.unit_roundoff(dtype)
    own = tol.SAFETY * (GELU_ULPS * u_acc * (h_mag + e_h) + u * (a_mag + carried)) + tol.smallest_subnormal(dtype)
    return carried + own


def _activation_grad_error(act: str, h, e_h, ga_mag, e_ga, dtype):
    """Bound on ``|fl(g̃_a · φ'(h̃)) − g_a · φ'(h)|`` given the bounds on ``h̃`` and ``g̃_a``."""
    if act == "relu":
        ambiguous = h.abs() <= e_h  # h̃ may sit on the other side of 0: the gate may flip
        return torch.where(ambiguous, ga_mag + e_ga, e_ga)
    L, L2 = LIPSCHITZ[act], DERIVATIVE_LIPSCHITZ[act]
    u_acc, u = tol.accumulator_roundoff(dtype), tol.unit_roundoff(dtype)
    carried = L * e_ga + ga_mag * L2 * e_h
    own = tol.SAFETY * (GELU_ULPS * u_acc + u) * L * (ga_mag + e_ga) + tol.smallest_subnormal(dtype)
    return carried + own


def mlp_bounds(t, dense, activation: str, dtype: torch.dtype, ws: int) -> dict[str, torch.Tensor]:
    """Per-element bounds for output, input grad and every parameter grad of the MLP.

    ``t``: the exact tensors (w1, b1, w2, b2, x, grad_out); ``dense``: the float64 truth with the
    intermediates ``h`` (pre-activation), ``a`` (activation), ``ga`` and ``gh`` (their grads)."""
    w1, w2 = t.w1.double().abs(), t.w2.double().abs()
    x, g = t.x.double().abs(), t.grad_out.double().abs()
    d, hidden = w1.shape[1], w1.shape[0]
    rows = _flat(x).shape[0]

    # forward: h = x W1ᵀ + b1 (column, no reduction across ranks), a = φ(h), y = a W2ᵀ + b2 (row)
    m_h = x @ w1.T + (0 if t.b1 is None else t.b1.double().abs())
    e_h = tol.bound(m_h, d, dtype, ws)
    a_mag = dense.a.abs()
    e_a = _activation_error(activation, dense.h.abs(), e_h, a_mag, dtype, ws)
    m_y = (a_mag + e_a) @ w2.T + (0 if t.b2 is None else t.b2.double().abs())
    out = {"output": tol.bound(m_y, hidden, dtype, ws) + e_a @ w2.T}

    # backward through the row layer: g_a = g W2 (local), gW2 = gᵀ ã, gb2 = Σ g
    e_ga = tol.bound(g @ w2, d, dtype, ws)
    g2, a2, e_a2 = _flat(g), _flat(a_mag + e_a), _flat(e_a)
    out["w2_grad"] = tol.bound(g2.T @ a2, rows, dtype, ws) + g2.T @ e_a2
    out["b2_grad"] = tol.bias_grad_bound(t.grad_out, dtype, ws)

    # through the activation, then the column layer: gx = g_h W1 (all-reduced), gW1 = g_hᵀ x, gb1 = Σ g_h
    e_gh = _activation_grad_error(activation, dense.h, e_h, dense.ga.abs(), e_ga, dtype)
    gh_mag = dense.gh.abs() + e_gh
    out["input_grad"] = tol.bound(gh_mag @ w1, hidden, dtype, ws) + e_gh @ w1
    gh2, egh2, x2 = _flat(gh_mag), _flat(e_gh), _flat(x)
    out["w1_grad"] = tol.bound(gh2.T @ x2, rows, dtype, ws) + egh2.T @ x2
    out["b1_grad"] = tol.bound(gh2.sum(0), rows, dtype, ws) + egh2.sum(0)
    return out
