"""A replicated parameter on a sequence-parallel input (verdict side): the RMSNorm of Megatron-LM's
sequence parallelism, and the bug class of Megatron-LM #1446.

The input ``x [seq, *batch, hidden]`` is sharded along the sequence (rank ``r`` holds rows
``case.tokens(r)``); the norm's weight ``w [hidden]`` is *replicated*: every rank holds all of it. The
dense layer is ``y = x / sqrt(mean(x², -1) + eps) · w``. Every rank must:

1. **output and input grad**: return its rows of the dense output, and give its input rows their
   dense grad, for a random upstream grad;
2. **weight grad**: hold the *whole* dense weight grad ``Σ_tokens g ⊙ x̂`` over every token of every
   rank — its own rows give only a partial sum, which must be all-reduced (summed, not averaged) over
   the TP group, by the layer or by the training-loop step the impl declares (``impl.finalize_grads``);
3. **replicas stay replicas**: hold a weight grad bit-identical to every other rank's; replicas whose
   grads differ in the last bit drift apart step by step.

Tolerances (first order, ``SAFETY`` for the rest; ``u`` the dtype's unit roundoff, ``u_acc`` its
accumulator's, ``tiny`` its smallest subnormal, ``n = hidden``, ``T`` the tokens of all ranks): the
statistic ``s = mean(x²) + eps`` is off by a relative ``ρ_s = n·u_acc + 3u + 3·tiny/s`` (the squares, the
sum, the division, ``+ eps``), ``k = s^-½`` by ``ρ_k = ρ_s/2 + 2u``. Then, with ``x̂ = x·k``:

- output: ``|y|·(ρ_k + 2u)``;
- input grad ``k·g⊙w − x·k³·Σⱼ gⱼwⱼxⱼ / n``: its first term's magnitude times ``ρ_k + 4u``, its second's
  times ``3ρ_k + n·u_acc + 9u`` (``k³``, the sum, the products and the two paths' addition), and each
  rounding's underflow carried by its path's factor: ``tiny·(8 + 8k + 8k³|x|)``;
- weight grad: ``Σ_t |g x̂|·(ρ_k + 2u + T·u_acc + (p + 1)·u)`` (each product, each rank's partial sum,
  the all-reduce's ``p − 1`` additions and its rounding) plus ``(T + p + 3)·tiny``;

each with ``(n + T)`` float64 roundings of the ground truth. Every bound holds for any order of
summation and for a layer that computes in float32 and rounds its results to the dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tpconform.families.common import compare_fields, not_offered, preconditions, run_on_every_rank
from tpconform.families.replicated_norm.case import ReplicatedNormCase
from tpconform.spec import tolerance as tol
from tpconform.spec.violations import Violation

_F64_U = torch.finfo(torch.float64).eps / 2


@dataclass
class NormTensors:
    x: torch.Tensor  # [seq, *batch, hidden], the case's dtype
    weight: torch.Tensor  # [hidden], replicated on every rank
    grad_out: torch.Tensor  # like x


def make_tensors(case: ReplicatedNormCase) -> NormTensors:
    gen = torch.Generator().manual_seed(case.seed)
    shape, dt = (case.seq, *case.batch_shape, case.hidden), case.torch_dtype
    return NormTensors(
        x=torch.randn(shape, generator=gen, dtype=torch.float64).to(dt),
        weight=(1 + 0.5 * torch.randn(case.hidden, generator=gen, dtype=torch.float64)).to(dt),
        grad_out=torch.randn(shape, generator=gen, dtype=torch.float64).to(dt),
    )


@dataclass
class DenseNorm:
    output: torch.Tensor
    output_bound: torch.Tensor
    input_grad: torch.Tensor
    input_grad_bound: torch.Tensor
    weight_grad: torch.Tensor  # over every token of every rank
    weight_grad_bound: torch.Tensor
    partial_weight_grads: list[torch.Tensor]  # each rank's own tokens' share (what a missing reduction leaves)
    statistic_term: torch.Tensor  # the input grad's second term, ``x·k³·Σ gwx / n`` (diagnosis)


def dense_norm(case: ReplicatedNormCase, t: NormTensors) -> DenseNorm:
    x, w, g = t.x.double(), t.weight.double(), t.grad_out.double()
    n, dt, p = case.hidden, case.torch_dtype, case.world_size
    tokens = x.numel() // n
    u, u_acc, tiny = tol.unit_roundoff(dt), tol.accumulator_roundoff(dt), tol.smallest_subnormal(dt)
    s = (x * x).mean(-1, keepdim=True) + case.eps
    k = s.rsqrt()
    xhat = x * k
    y = xhat * w
    gw = g * w
    first = k * gw
    statistic = x * k**3 * (gw * x).sum(-1, keepdim=True) / n
    first_mag = k * gw.abs()
    second_mag = x.abs() * k**3 * (gw * x).abs().sum(-1, keepdim=True) / n
    f64 = (n + tokens) * _F64_U
    rho_s = n * u_acc + 3 * u + 3 * tiny / s
    rho_k = rho_s / 2 + 2 * u + f64
    output_bound = tol.SAFETY * y.abs() * (rho_k + 2 * u) + tol.roundings(p) * tiny
    input_grad_bound = (tol.SAFETY * (first_mag * (rho_k + 4 * u) + second_mag * (3 * rho_k + n * u_acc + 9 * u))
                        + tiny * (8 + 8 * k + 8 * k**3 * x.abs()))
    terms = (g * xhat).reshape(-1, n)
    rel = (rho_k + 2 * u).expand_as(g * xhat).reshape(-1, n)
    weight_grad_bound = (tol.SAFETY * ((terms.abs() * rel).sum(0) + terms.abs().sum(0) * (tokens * u_acc + (p + 1) * u))
                         + (tokens + p + 3) * tiny)
    per_rank = [(g[case.tokens(r)] * xhat[case.tokens(r)]).reshape(-1, n).sum(0) for r in range(p)]
    return DenseNorm(output=y, output_bound=output_bound, input_grad=first - statistic, input_grad_bound=input_grad_bound,
                     weight_grad=terms.sum(0), weight_grad_bound=weight_grad_bound, partial_weight_grads=per_rank,
                     statistic_term=statistic)


@dataclass
class NormEvidence:
    case: ReplicatedNormCase
    tensors: NormTensors
    ranks: list[dict]
    crash: Optional[str]
    dense: DenseNorm


REPLICATED_NORM_SPEC: dict = {}


def norm_property(fn):
    REPLICATED_NORM_SPEC[fn.__name__] = fn
    return fn


@norm_property
def replicated_norm_matches_the_dense_norm(ev: NormEvidence) -> list[Violation]:
    """Each rank returns its rows of the dense norm's output, and its input rows get their dense grad."""
    name, d, c = "replicated_norm_matches_the_dense_norm", ev.dense, ev.case
    return [v for r, res in enumerate(ev.ranks)
            for v in compare_fields(name, r, res, [("output", d.output[c.tokens(r)], d.output_bound[c.tokens(r)]),
                                                   ("input_grad", d.input_grad[c.tokens(r)],
                                                    d.input_grad_bound[c.tokens(r)])])]


@norm_property
def replicated_norm_weight_grad_is_the_dense_grad(ev: NormEvidence) -> list[Violation]:
    """Every rank's replicated weight gets the whole dense grad: every token's share, all-reduced (summed)."""
    name, d = "replicated_norm_weight_grad_is_the_dense_grad", ev.dense
    return [v for r, res in enumerate(ev.ranks)
            for v in compare_fields(name, r, res, [("weight_grad", d.weight_grad, d.weight_grad_bound)])]


@norm_property
def replicated_norm_weight_grads_are_identical_on_every_rank(ev: NormEvidence) -> list[Violation]:
    """The replicas' weight grads are bit-identical on every rank (replicas that differ drift apart)."""
    name, out = "replicated_norm_weight_grads_are_identical_on_every_rank", []
    grads = [res.get("weight_grad") for res in ev.ranks]
    first = grads[0] if grads else None
    for r, grad in enumerate(grads[1:], start=1):
        if not isinstance(first, torch.Tensor) or not isinstance(grad, torch.Tensor):
            continue  # a missing grad is the dense-grad property's violation
        if first.shape != grad.shape or not torch.equal(first, grad):
            differ = int((first != grad).sum()) if first.shape == grad.shape else first.numel()
            out.append(Violation(name, f"rank {r}'s weight grad differs from rank 0's in {differ} of {grad.numel()} "
                                       f"elements (the replicas' grads must be bit-identical)", r, "weight grad replica"))
    return out


def evidence(suite, case: ReplicatedNormCase) -> Optional[NormEvidence]:
    """Run ``case``, each rank sent its rows of the input and of the upstream grad, and the whole weight;
    ``None`` when the impl offers no replicated norm."""
    t = make_tensors(case)
    ranks, crash = run_on_every_rank(suite, case, "run_replicated_norm", lambda r: {
        "x": t.x[case.tokens(r)].clone(), "grad_out": t.grad_out[case.tokens(r)].clone(), "weight": t.weight})
    if not_offered(ranks):
        return None
    return NormEvidence(case, t, ranks, crash, dense_norm(case, t))


def violations(suite, case: ReplicatedNormCase, prop: str, ev: Optional[NormEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: f"the norm could not be built on rank(s) {failed}")
    return pre if pre is not None else REPLICATED_NORM_SPEC[prop](ev)
