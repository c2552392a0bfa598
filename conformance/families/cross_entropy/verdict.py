"""Vocab-parallel cross entropy (verdict side): the loss of logits sharded along the vocabulary.

The logits ``z [*, V]`` come out of a column layer left sharded: rank ``r`` holds columns
``r·V/p … (r+1)·V/p``. With targets ``t`` and an upstream grad ``g`` (one per token), every rank must:

1. **loss**: return the dense per-token loss ``logsumexp(z) − z[t]`` — the max, the sum of
   exponentials and the target's logit each combined over the ranks (Megatron's
   ``vocab_parallel_cross_entropy``);
2. **logit grads**: give its logit shard its columns of the dense grad ``g·(softmax(z) − onehot(t))``;
3. **logits untouched**: leave the logits it was handed as they were (a caller keeps them).

Tolerance (first order, ``SAFETY`` for the rest; ``u`` the dtype's unit roundoff, ``u_acc`` its
accumulator's): the sum of exponentials ``S`` is off by a relative ``ρ = u·(max|z − m| + 2) + V·u_acc +
(p + 2)·u`` (the shift by the max, each exponential, the sum, the all-reduce); the loss by
``ρ + u·(|log S| + |z[t] − m| + |loss|)``; each grad element by ``|g|·(softmax·(ρ + u·(|z − m| + 2)) +
2u·(softmax + onehot))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tpconform.families.common import compare_on_rank, not_offered, preconditions, run_on_every_rank
from tpconform.families.cross_entropy.case import CrossEntropyCase
from tpconform.spec import tolerance as tol
from tpconform.spec.violations import Violation


@dataclass
class CrossEntropyTensors:
    logits: torch.Tensor  # [*batch, vocab], the case's dtype
    target: torch.Tensor  # int64, batch_shape
    grad_out: torch.Tensor  # [*batch], the case's dtype


def make_tensors(case: CrossEntropyCase) -> CrossEntropyTensors:
    gen = torch.Generator().manual_seed(case.seed)
    dt = case.torch_dtype
    return CrossEntropyTensors(
        logits=(torch.randn((*case.batch_shape, case.vocab), generator=gen, dtype=torch.float64) * case.scale).to(dt),
        target=torch.randint(0, case.vocab, case.batch_shape, generator=gen, dtype=torch.int64),
        grad_out=torch.randn(case.batch_shape, generator=gen, dtype=torch.float64).to(dt),
    )


@dataclass
class DenseCrossEntropy:
    loss: torch.Tensor
    loss_bound: torch.Tensor
    grad: torch.Tensor  # of the logits
    grad_bound: torch.Tensor


def dense_cross_entropy(t: CrossEntropyTensors, dtype: torch.dtype, world_size: int) -> DenseCrossEntropy:
    z, g = t.logits.double(), t.grad_out.double()
    vocab = z.shape[-1]
    u, u_acc = tol.unit_roundoff(dtype), tol.accumulator_roundoff(dtype)
    m = z.max(-1, keepdim=True).values if z.numel() else z.sum(-1, keepdim=True)
    lse = torch.logsumexp(z, -1)
    zt = z.gather(-1, t.target.unsqueeze(-1)).squeeze(-1)
    loss = lse - zt
    p = torch.softmax(z, -1)
    onehot = torch.nn.functional.one_hot(t.target, vocab).double()
    spread = (z - m).abs()
    rho = u * (spread.amax(-1) + 2 if z.numel() else spread.sum(-1)) + vocab * u_acc + (world_size + 2) * u
    safety, tiny = tol.SAFETY, tol.roundings(world_size) * tol.smallest_subnormal(dtype)
    loss_bound = safety * (rho + u * ((lse - m.squeeze(-1)).abs() + (zt - m.squeeze(-1)).abs() + loss.abs())) + tiny
    grad_bound = safety * g.abs().unsqueeze(-1) * (p * (rho.unsqueeze(-1) + u * (spread + 2)) + 2 * u * (p + onehot)) + tiny
    return DenseCrossEntropy(loss=loss, loss_bound=loss_bound, grad=g.unsqueeze(-1) * (p - onehot), grad_bound=grad_bound)


@dataclass
class CrossEntropyEvidence:
    case: CrossEntropyCase
    tensors: CrossEntropyTensors
    ranks: list[dict]
    crash: Optional[str]
    dense: DenseCrossEntropy


CROSS_ENTROPY_SPEC: dict = {}
# evidence measured inside the candidate's process (in-place flags its worker sets): no points
SELF_REPORTED = frozenset({"cross_entropy_leaves_its_logits_untouched"})


def cross_entropy_property(fn):
    CROSS_ENTROPY_SPEC[fn.__name__] = fn
    return fn


@cross_entropy_property
def cross_entropy_loss_matches_the_dense_loss(ev: CrossEntropyEvidence) -> list[Violation]:
    """Every rank returns the dense per-token loss ``logsumexp(z) − z[t]``."""
    name, d = "cross_entropy_loss_matches_the_dense_loss", ev.dense
    return [v for r, res in enumerate(ev.ranks)
            for v in compare_on_rank(name, r, res.get("output"), d.loss, d.loss_bound, "loss")]


@cross_entropy_property
def cross_entropy_logit_grads_match_the_dense_grads(ev: CrossEntropyEvidence) -> list[Violation]:
    """Each rank's logit shard gets its columns of ``g·(softmax(z) − onehot(t))``."""
    name, d, c = "cross_entropy_logit_grads_match_the_dense_grads", ev.dense, ev.case
    return [v for r, res in enumerate(ev.ranks)
            for v in compare_on_rank(name, r, res.get("input_grad"), d.grad[..., c.columns(r)],
                                     d.grad_bound[..., c.columns(r)], "logit grad")]


@cross_entropy_property
def cross_entropy_leaves_its_logits_untouched(ev: CrossEntropyEvidence) -> list[Violation]:
    """Neither the logits nor the upstream grad change in place (the caller still holds them)."""
    name, out = "cross_entropy_leaves_its_logits_untouched", []
    for r, res in enumerate(ev.ranks):
        for key, what in (("input_modified", "its logits"), ("grad_modified", "the upstream grad")):
            if res.get(key):
                out.append(Violation(name, f"rank {r}'s cross entropy modified {what} in place", r, what))
    return out


def evidence(suite, case: CrossEntropyCase) -> Optional[CrossEntropyEvidence]:
    """Run ``case``, each rank sent only its logit shard; ``None`` when the impl offers no such loss."""
    t = make_tensors(case)
    ranks, crash = run_on_every_rank(suite, case, "run_cross_entropy", lambda r: {
        "logits": t.logits[..., case.columns(r)].clone(), "target": t.target, "grad_out": t.grad_out})
    if not_offered(ranks):
        return None
    return CrossEntropyEvidence(case, t, ranks, crash, dense_cross_entropy(t, case.torch_dtype, case.world_size))


def violations(suite, case: CrossEntropyCase, prop: str, ev: Optional[CrossEntropyEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: f"the loss could not be built on rank(s) {failed}")
    return pre if pre is not None else CROSS_ENTROPY_SPEC[prop](ev)
