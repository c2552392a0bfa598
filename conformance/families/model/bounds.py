"""Worst-case error bounds for the model's logits, loss and every parameter grad, built on the block
family's (:mod:`tpconform.families.block.bounds`: the same rules, stage by stage along the float64 trace,
``u`` the dtype's unit roundoff, ``u_acc`` its accumulator's, ``bound(M, n)`` one sum of ``n`` products of
magnitude ``M`` with the all-reduce of ``p`` ranks included, ``SAFETY`` for second-order terms).

- **embedding**: a lookup copies rounded weights: exact (a vocab-sharded one adds zeros from the other
  ranks: exact too); its weight grad sums each id's token grads: ``bound(Σ(|g| + E_g), tokens) + ΣE_g``;
- **blocks**: ``block_bounds`` with the error the block's input already carries and, backward, the error of
  its upstream grad (blocks in order forward, in reverse backward);
- **final norm, lm_head**: the block's RMSNorm and linear rules (the lm_head's input-grad sum runs over the
  vocab, all-reduced across its shards);
- **loss** ``L = mean_t(lse(z_t) − z_t[y_t])`` over ``T`` tokens (the cross-entropy family's derivation):
  per token the sum of exponentials ``S`` is off by a relative ``ρ = u·(max|z − m| + 2) + V·u_acc +
  (p + 2)·u`` (the shift by the max, each exponential, the sum, the all-reduce of a vocab-parallel loss),
  the token's loss by ``ρ + u·(|log S| + |z[y] − m| + |ℓ|)`` of its own and ``Σ_j softmax_j·E_zj + E_z[y]``
  carried from the logits; the mean adds ``bound(mean|ℓ|, T)``;
- **loss backward** ``g_z = (softmax(z) − onehot(y))/T``: own ``(softmax·(ρ + u·(|z − m| + 2)) +
  2u·(softmax + onehot))/T + 3u|g_z|`` (the cross-entropy family's, and ``1/T`` rounded), carried
  ``softmax_j·(E_zj + Σ_k softmax_k·E_zk)/T``;
- **tied weight**: the grad of the one parameter is the embedding's plus the lm_head's: ``E₁ + E₂ + u|sum|``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tpconform.families.block.bounds import Rounding, _linear, _linear_back, _norm, _norm_back, block_bounds, trace
from tpconform.families.block.dense import EPS, build_block
from tpconform.spec import tolerance as tol


def _rms(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + EPS) * w


def model_trace(case, weights: dict, tokens: torch.Tensor, targets: torch.Tensor) -> dict:
    """The model's forward and backward in float64 (as ``dense.Model``): each block's input and upstream grad,
    the final norm's input and output, the logits, their grad, the per-token losses and the loss."""
    W = {k: t.detach().double().clone().requires_grad_(True) for k, t in weights.items()}
    out_w = W["tok_embeddings.weight"] if case.tied else W["output.weight"]
    h = F.embedding(tokens, W["tok_embeddings.weight"])
    ins, outs = [], []
    for i in range(case.n_layers):
        prefix = f"layers.{i}."
        block = build_block(case, torch.float64, {k[len(prefix):]: v.detach() for k, v in W.items() if k.startswith(prefix)})
        x = h.detach().requires_grad_(True)
        ins.append(x)
        h = block(x)
        h.retain_grad()
        outs.append(h)
    hN = h.detach().requires_grad_(True)
    n = _rms(hN, W["norm.weight"])
    n.retain_grad()
    z = F.linear(n, out_w)
    z.retain_grad()
    per_token = F.cross_entropy(z.flatten(0, 1), targets.flatten(), reduction="none")
    loss = per_token.mean()
    loss.backward()
    g = hN.grad
    grads_in: list = [None] * case.n_layers
    for i in reversed(range(case.n_layers)):
        outs[i].backward(g)
        grads_in[i] = g
        g = ins[i].grad
    flat = (lambda t: t.reshape(-1, t.shape[-1]))  # noqa: E731
    return {"tokens": tokens, "targets": targets, "block_inputs": [x.detach() for x in ins], "block_grads": grads_in,
            "h": hN.detach(), "n": n.detach(), "grad_n": n.grad, "logits": z.detach(), "grad_logits": z.grad,
            "per_token": per_token.detach(), "loss": loss.detach(), "grad_embedded": g,
            "lm_head_grad": flat(z.grad).T @ flat(n.detach()), "weights": {k: t.detach() for k, t in W.items()}}


def _loss_bounds(rd: Rounding, z: torch.Tensor, ez: torch.Tensor, y: torch.Tensor, per_token: torch.Tensor,
                 vocab: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the mean loss and on its grad w.r.t. the logits ``z [T, V]`` (off by ``ez``)."""
    T, u, S_ = z.shape[0], rd.u, tol.SAFETY
    m = z.max(-1, keepdim=True).values
    sm = torch.softmax(z, -1)
    onehot = F.one_hot(y, vocab).double()
    rho = u * ((z - m).abs().amax(-1, keepdim=True) + 2) + vocab * rd.ua + (p + 2) * u
    log_s = torch.logsumexp(z - m, -1, keepdim=True)
    zy = (z * onehot).sum(-1, keepdim=True)
    own = S_ * (rho + u * (log_s.abs() + (zy - m).abs() + per_token[:, None].abs()))
    carried = (sm * ez).sum(-1, keepdim=True) + (ez * onehot).sum(-1, keepdim=True)
    e_loss = (own + carried).mean() + tol.bound(per_token.abs().mean(), T, rd.dtype, p)
    g = (sm - onehot) / T
    e_g = (S_ * (sm * (rho + u * ((z - m).abs() + 2)) + 2 * u * (sm + onehot)) / T + S_ * 3 * u * g.abs()
           + sm * (ez + (sm * ez).sum(-1, keepdim=True)) / T)
    return e_loss, e_g


def model_bounds(case, tr: dict, dtype: torch.dtype, ws: int) -> dict[str, torch.Tensor]:
    """Bounds on ``logits``, ``loss`` and ``grad:<name>`` for every parameter (tied: ``output.weight`` is the
    embedding's), from a :func:`model_trace`."""
    rd, W, L = Rounding(dtype, ws), tr["weights"], case.n_layers
    blocks = [{k[len(f"layers.{i}."):]: v for k, v in W.items() if k.startswith(f"layers.{i}.")} for i in range(L)]
    traces = [trace(blocks[i], case, tr["block_inputs"][i], tr["block_grads"][i]) for i in range(L)]
    errors = [torch.zeros_like(tr["block_inputs"][0])]
    for i in range(L):  # forward: each block's output error, from its input's
        errors.append(block_bounds(case, traces[i], dtype, ws, backward=False, input_error=errors[i])["output"])
    h, eh = tr["h"], errors[L]
    out_w = W["tok_embeddings.weight"] if case.tied else W["output.weight"]
    en = _norm(rd, h, eh, W["norm.weight"])
    ez = _linear(rd, tr["n"], en, out_w, None)
    flat = (lambda t: t.reshape(-1, t.shape[-1]))  # noqa: E731
    e_loss, e_gz = _loss_bounds(rd, flat(tr["logits"]), flat(ez), tr["targets"].flatten(), tr["per_token"],
                                case.vocab, ws)
    e_gz = e_gz.view_as(tr["logits"])
    out: dict[str, torch.Tensor] = {"logits": ez, "loss": e_loss}
    e_gn, e_out_w, _ = _linear_back(rd, tr["grad_logits"], e_gz, tr["n"], en, out_w)
    eg, out["grad:norm.weight"] = _norm_back(rd, h, eh, W["norm.weight"], tr["grad_n"], e_gn)
    for i in reversed(range(L)):
        b = block_bounds(case, traces[i], dtype, ws, input_error=errors[i], grad_out_error=eg)
        out.update({f"grad:layers.{i}.{k[len('grad:'):]}": v for k, v in b.items() if k.startswith("grad:")})
        eg = b["input_grad"]
    ids = tr["tokens"].flatten()
    g0 = flat(tr["grad_embedded"]).abs()
    magnitude = torch.zeros_like(W["tok_embeddings.weight"]).index_add_(0, ids, g0 + flat(eg))
    carried = torch.zeros_like(magnitude).index_add_(0, ids, flat(eg))
    e_emb = tol.bound(magnitude, ids.numel(), dtype, ws) + carried
    if case.tied:
        total = (torch.zeros_like(magnitude).index_add_(0, ids, flat(tr["grad_embedded"]))
                 + tr["lm_head_grad"]).abs()
        out["grad:tok_embeddings.weight"] = e_emb + e_out_w + rd.own(rd.u, total)
        out["grad:output.weight"] = out["grad:tok_embeddings.weight"]
    else:
        out["grad:tok_embeddings.weight"], out["grad:output.weight"] = e_emb, e_out_w
    return out
