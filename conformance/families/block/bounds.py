"""Worst-case error bounds for the block's output, input grad and every parameter grad, forward and backward.

Built as :mod:`tpconform.families.mlp.bounds` builds the MLP's, stage by stage along the float64 trace of
the block (:func:`trace`), each stage's bound its own rounding on the (perturbed) magnitudes plus the error
it was handed carried through its first-order sensitivity (``E·|J|``); ``SAFETY`` (2) covers second-order
terms. ``u`` is the dtype's unit roundoff, ``u_acc`` its accumulator's, ``bound(M, n)`` one sum of ``n``
products of magnitude ``M`` (:func:`tpconform.spec.tolerance.bound`: ``n·u_acc + (p+3)·u``, the all-reduce
of ``p`` ranks included). The stages and their rules:

- **linear** ``y = x Wᵀ + b``: ``bound((|x| + E_x)|W|ᵀ + |b|, in) + E_x|W|ᵀ`` (+ ``|x|·E_W + E_b`` for a
  weight already off by ``E_W``, after a step); backward ``g_x``: ``bound((|g| + E_g)|W|, out) + E_g|W|``,
  ``g_W``: ``bound((|g| + E_g)ᵀ(|x| + E_x), tokens) + E_gᵀ|x| + |g|ᵀE_x``, ``g_b``: the same with ``x = 1``;
- **RMSNorm** ``n = x·r·w``, ``r = (mean x² + ε)^-½``: own ``(d·u_acc + 5u)|n|``; carried
  ``|w|·r·(E_x + |x|·r²·mean(|x|E_x))`` (its Jacobian ``w·r·(I − x̂x̂ᵀ/d)``); backward
  ``g_x = r·w·g − x·r³·S/d`` (``S = Σ w·g·x``): own ``(d·u_acc + 10u)`` of both terms' magnitudes, carried
  through the same Jacobian and, for ``E_x``, through ``r``, ``x`` and ``S`` (``δ = r²·Σ|x|E_x/d``);
- **RoPE** ``q·cos + rot(q)·sin`` (tables rounded to the dtype): own ``3u(|q||cos| + |rot q||sin|)``,
  carried ``E|cos| + rot(E)|sin|``; its backward is the same rotation transposed;
- **scores, attention-weighted values**: sums over ``head_dim`` / keys, as linear; **softmax**
  ``p``: ``|Δp_i| ≤ p_i·(|Δs_i| + Σ_j p_j|Δs_j|) ≤ 2p_i·max_j E_s``, own ``p·(u|s − max s| + seq·u_acc + 3u)``;
  backward ``g_s = p(g_p − Σ p g_p)``: carried from ``E_gp`` and ``E_p``, own ``(seq·u_acc + 3u)`` of its
  magnitudes; grouped kv heads sum their query heads' grads (``bound(·, n_heads/n_kv_heads)``);
- **SiLU**: Lipschitz ``1.1`` (``max silu'`` ≈ 1.0998), ``|silu''| ≤ 0.5``; its evaluation ``u(|a| + 4)``
  relative, its derivative's ``u(2|a| + 6)`` absolute (``σ``, ``1 − σ`` and the product);
- **products, residual sums**: ``|a|E_b + |b|E_a + E_aE_b + u|ab|``; ``E_a + E_b + u|a + b|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tpconform.families.block.dense import EPS, rope_tables
from tpconform.spec import tolerance as tol

SILU_LIPSCHITZ = 1.1
SILU_CURVATURE = 0.5


@dataclass
class Rounding:
    dtype: torch.dtype
    ws: int

    @property
    def u(self) -> float:
        return tol.unit_roundoff(self.dtype)

    @property
    def ua(self) -> float:
        return tol.accumulator_roundoff(self.dtype)

    def sum_of(self, m: torch.Tensor, n: int) -> torch.Tensor:
        return tol.bound(m, n, self.dtype, self.ws)

    def own(self, rel: float, m: torch.Tensor) -> torch.Tensor:
        return tol.SAFETY * rel * m + tol.roundings(self.ws) * tol.smallest_subnormal(self.dtype)


def _swap(t: torch.Tensor) -> torch.Tensor:
    half = t.shape[-1] // 2
    return torch.cat([t[..., half:], t[..., :half]], -1)


def _rope(rd: Rounding, a: torch.Tensor, e: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    c, s = cos.abs()[:, None, :], sin.abs()[:, None, :]
    return e * c + _swap(e) * s + rd.own(3 * rd.u, a.abs() * c + _swap(a.abs()) * s)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def _linear(rd, x, ex, w, b, ew=None, eb=None):
    """``ew``, ``eb``: how far the weight and bias the rank holds may be from ``w``, ``b`` (after a step)."""
    wa = w.abs() if ew is None else w.abs() + ew
    ba = 0 if b is None else (b.abs() if eb is None else b.abs() + eb)
    m = (x.abs() + ex) @ wa.T + ba
    e = rd.sum_of(m, w.shape[1]) + ex @ wa.T
    if ew is not None:
        e = e + x.abs() @ ew.T
    if eb is not None:
        e = e + eb
    return e


def _linear_back(rd, g, eg, x, ex, w, ew=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bounds on the input grad, the weight grad and the bias grad (``ew``: the weight's own error)."""
    wa = w.abs() if ew is None else w.abs() + ew
    gi = rd.sum_of((g.abs() + eg) @ wa, w.shape[0]) + eg @ wa
    if ew is not None:
        gi = gi + g.abs() @ ew
    g2, eg2, x2, ex2 = _flat(g.abs()), _flat(eg), _flat(x.abs()), _flat(ex)
    tokens = g2.shape[0]
    gw = rd.sum_of((g2 + eg2).T @ (x2 + ex2), tokens) + eg2.T @ x2 + g2.T @ ex2
    gb = rd.sum_of((g2 + eg2).sum(0), tokens) + eg2.sum(0)
    return gi, gw, gb


def _norm(rd, x, ex, w, ew=None):
    d = x.shape[-1]
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)
    wa = w.abs() if ew is None else w.abs() + ew
    e = wa * r * (ex + x.abs() * r**2 * (x.abs() * ex).mean(-1, keepdim=True)) + rd.own(d * rd.ua + 5 * rd.u, (x * r).abs() * wa)
    if ew is not None:
        e = e + (x * r).abs() * ew
    return e


def _norm_back(rd, x, ex, w, g, eg, ew=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the norm's input grad and its weight's grad (``ew``: the weight's own error)."""
    d = x.shape[-1]
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)
    xa, ga = x.abs(), g.abs()
    wa = w.abs() if ew is None else w.abs() + ew
    s_abs = (wa * ga * xa).sum(-1, keepdim=True)
    s = (w * g * x).sum(-1, keepdim=True)
    delta = r**2 * (xa * ex).sum(-1, keepdim=True) / d
    from_g = r * wa * eg + xa * r**3 * (wa * xa * eg).sum(-1, keepdim=True) / d
    from_x = (r * wa * ga * delta + ex * r**3 * s.abs() / d + 3 * xa * r**3 * delta * s.abs() / d
              + xa * r**3 * (wa * ga * ex).sum(-1, keepdim=True) / d)
    own = rd.own(d * rd.ua + 10 * rd.u, r * wa * (ga + eg) + xa * r**3 * s_abs / d)
    gx = from_g + from_x + own
    if ew is not None:  # g_x = r·w·g − x·r³·S/d is linear in w: the weight's error carried through both terms
        gx = gx + r * ew * ga + xa * r**3 * (ew * ga * xa).sum(-1, keepdim=True) / d
    xr, exr = _flat(xa * r), _flat(r * (ex + xa * delta))
    g2, eg2 = _flat(ga), _flat(eg)
    gw = rd.sum_of(((g2 + eg2) * (xr + exr)).sum(0), g2.shape[0] + 3) + (eg2 * xr + g2 * exr).sum(0)
    return gx, gw


def trace(wts: dict, c, x: torch.Tensor, g: torch.Tensor) -> dict:
    """The block's forward and backward in float64, every intermediate and its grad (as ``Block``)."""
    v: dict = {}

    def keep(name, t):
        t.retain_grad()
        v[name] = t
        return t

    W = {k: t.detach().double().clone().requires_grad_(True) for k, t in wts.items()}
    B = (lambda n: W.get(n))  # noqa: E731
    x = x.detach().double().clone().requires_grad_(True)
    b, s = x.shape[0], x.shape[1]
    nh, nkv, hd = c.n_heads, c.n_kv_heads, c.head_dim

    def norm(t, w):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + EPS) * w

    n1 = keep("n1", norm(x, W["attention_norm.weight"]))
    q = keep("q", F.linear(n1, W["attention.wq.weight"], B("attention.wq.bias")).view(b, s, nh, hd))
    k = keep("k", F.linear(n1, W["attention.wk.weight"], B("attention.wk.bias")).view(b, s, nkv, hd))
    val = keep("v", F.linear(n1, W["attention.wv.weight"], B("attention.wv.bias")).view(b, s, nkv, hd))
    cos, sin = rope_tables(s, hd, torch.float64)
    rot = (lambda t: torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1))  # noqa: E731
    qr = keep("qr", q * cos[:, None] + rot(q) * sin[:, None])
    kr = keep("kr", k * cos[:, None] + rot(k) * sin[:, None])
    ke = keep("ke", kr.repeat_interleave(nh // nkv, 2))
    ve = keep("ve", val.repeat_interleave(nh // nkv, 2))
    sc = keep("sc", torch.einsum("bqhd,bkhd->bhqk", qr, ke) / math.sqrt(hd))
    causal = torch.ones(s, s, dtype=torch.bool).triu(1)
    p = keep("p", torch.softmax(sc.masked_fill(causal, float("-inf")), -1))
    o = keep("o", torch.einsum("bhqk,bkhd->bqhd", p, ve).reshape(b, s, nh * hd))
    h = keep("h", x + F.linear(o, W["attention.wo.weight"], B("attention.wo.bias")))
    n2 = keep("n2", norm(h, W["ffn_norm.weight"]))
    a1 = keep("a1", F.linear(n2, W["feed_forward.w1.weight"], B("feed_forward.w1.bias")))
    a3 = keep("a3", F.linear(n2, W["feed_forward.w3.weight"], B("feed_forward.w3.bias")))
    s1 = keep("s1", F.silu(a1))
    m = keep("m", s1 * a3)
    out = h + F.linear(m, W["feed_forward.w2.weight"], B("feed_forward.w2.bias"))
    out.backward(g.double())
    v["x"], v["out"], v["cos"], v["sin"] = x, out, cos, sin
    return {"value": {k: t.detach() for k, t in v.items()}, "grad_out": g.double(),
            "grad": {k: t.grad for k, t in v.items() if (t.retains_grad or t.is_leaf) and t.grad is not None},
            "weights": {k: t.detach() for k, t in W.items()},
            "param_grad": {k: t.grad.detach() for k, t in W.items() if t.grad is not None}}


def _group_sum(t: torch.Tensor, nkv: int) -> torch.Tensor:
    b, s, nh, hd = t.shape
    return t.reshape(b, s, nkv, nh // nkv, hd).sum(3)


def block_bounds(c, tr: dict, dtype: torch.dtype, ws: int, weight_errors: dict | None = None,
                 backward: bool = True, input_error: torch.Tensor | None = None,
                 grad_out_error: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Bounds on ``output``, ``input_grad`` and each parameter's grad (by name), from a :func:`trace`.
    ``weight_errors``: how far each parameter the block holds may already be from the traced one;
    ``input_error`` / ``grad_out_error``: how far the block's input / upstream grad may already be from the
    traced ones (a block inside a model: the model family); zero when not given."""
    rd, V, G, W = Rounding(dtype, ws), tr["value"], tr["grad"], tr["weights"]
    ew = weight_errors or {}
    B = (lambda n: W.get(n))  # noqa: E731
    b, s = V["x"].shape[:2]
    nh, nkv, hd = c.n_heads, c.n_kv_heads, c.head_dim
    rep, root = nh // nkv, math.sqrt(hd)
    zero = torch.zeros_like(V["x"])
    cos, sin = V["cos"], V["sin"]

    def lin(x, ex, name, shape=None):
        e = _linear(rd, x, ex, W[f"{name}.weight"], B(f"{name}.bias"), ew.get(f"{name}.weight"), ew.get(f"{name}.bias"))
        return e if shape is None else e.view(*shape)

    # -- forward ---------------------------------------------------------------------------------
    ex = zero if input_error is None else input_error
    E: dict = {"x": ex}
    E["n1"] = _norm(rd, V["x"], ex, W["attention_norm.weight"], ew.get("attention_norm.weight"))
    E["q"] = lin(V["n1"], E["n1"], "attention.wq", (b, s, nh, hd))
    E["k"] = lin(V["n1"], E["n1"], "attention.wk", (b, s, nkv, hd))
    E["v"] = lin(V["n1"], E["n1"], "attention.wv", (b, s, nkv, hd))
    E["qr"] = _rope(rd, V["q"], E["q"], cos, sin)
    E["kr"] = _rope(rd, V["k"], E["k"], cos, sin)
    E["ke"], E["ve"] = E["kr"].repeat_interleave(rep, 2), E["v"].repeat_interleave(rep, 2)
    qa, ka, va = V["qr"].abs(), V["ke"].abs(), V["ve"].abs()
    causal = torch.ones(s, s, dtype=torch.bool).triu(1)
    m_sc = torch.einsum("bqhd,bkhd->bhqk", qa + E["qr"], ka + E["ke"]) / root
    e_sc = (rd.sum_of(m_sc, hd + 1) + (torch.einsum("bqhd,bkhd->bhqk", E["qr"], ka)
                                       + torch.einsum("bqhd,bkhd->bhqk", qa, E["ke"])) / root).masked_fill(causal, 0)
    sc = V["sc"].masked_fill(causal, 0)
    p = V["p"]
    spread = (sc - sc.masked_fill(causal, float("-inf")).amax(-1, keepdim=True)).abs().masked_fill(causal, 0)
    E["p"] = 2 * p * e_sc.amax(-1, keepdim=True) + rd.own(1.0, p * (rd.u * spread + s * rd.ua + 3 * rd.u)) \
        + rd.own(4.0, torch.full_like(p, tol.smallest_subnormal(dtype)))
    m_o = torch.einsum("bhqk,bkhd->bqhd", p + E["p"], va + E["ve"])
    E["o"] = (rd.sum_of(m_o, s) + torch.einsum("bhqk,bkhd->bqhd", E["p"], va)
              + torch.einsum("bhqk,bkhd->bqhd", p, E["ve"])).reshape(b, s, nh * hd)
    e_attn = lin(V["o"], E["o"], "attention.wo")
    E["h"] = e_attn + ex + rd.own(rd.u, V["h"].abs())
    E["n2"] = _norm(rd, V["h"], E["h"], W["ffn_norm.weight"], ew.get("ffn_norm.weight"))
    E["a1"] = lin(V["n2"], E["n2"], "feed_forward.w1")
    E["a3"] = lin(V["n2"], E["n2"], "feed_forward.w3")
    E["s1"] = SILU_LIPSCHITZ * E["a1"] + rd.own(rd.u, (V["a1"].abs() + 4) * V["s1"].abs())
    E["m"] = (V["s1"].abs() * E["a3"] + V["a3"].abs() * E["s1"] + E["s1"] * E["a3"]
              + rd.own(rd.u, V["m"].abs()))
    e_f = lin(V["m"], E["m"], "feed_forward.w2")
    out = {"output": E["h"] + e_f + rd.own(rd.u, V["out"].abs())}
    if not backward:
        return out

    # -- backward --------------------------------------------------------------------------------
    go = tr["grad_out"]
    ego = torch.zeros_like(go) if grad_out_error is None else grad_out_error
    ga = {}
    gi, ga["feed_forward.w2.weight"], ga["feed_forward.w2.bias"] = _linear_back(
        rd, go, ego, V["m"], E["m"], W["feed_forward.w2.weight"], ew.get("feed_forward.w2.weight"))
    e_gm = gi
    g_m = G["m"]
    e_gs1 = e_gm * (V["a3"].abs() + E["a3"]) + g_m.abs() * E["a3"] + rd.own(rd.u, (g_m * V["a3"]).abs())
    e_ga3 = e_gm * (V["s1"].abs() + E["s1"]) + g_m.abs() * E["s1"] + rd.own(rd.u, (g_m * V["s1"]).abs())
    g_s1 = G["s1"]
    e_ga1 = (SILU_LIPSCHITZ * e_gs1 + g_s1.abs() * SILU_CURVATURE * E["a1"]
             + rd.own(rd.u, (2 * V["a1"].abs() + 6) * (g_s1.abs() + e_gs1)))
    gi1, ga["feed_forward.w1.weight"], ga["feed_forward.w1.bias"] = _linear_back(
        rd, G["a1"], e_ga1, V["n2"], E["n2"], W["feed_forward.w1.weight"], ew.get("feed_forward.w1.weight"))
    gi3, ga["feed_forward.w3.weight"], ga["feed_forward.w3.bias"] = _linear_back(
        rd, G["a3"], e_ga3, V["n2"], E["n2"], W["feed_forward.w3.weight"], ew.get("feed_forward.w3.weight"))
    e_gn2 = gi1 + gi3 + rd.own(rd.u, G["n2"].abs())
    e_gx2, ga["ffn_norm.weight"] = _norm_back(rd, V["h"], E["h"], W["ffn_norm.weight"], G["n2"], e_gn2,
                                              ew.get("ffn_norm.weight"))
    e_gh = e_gx2 + ego + rd.own(rd.u, G["h"].abs())

    gi_o, ga["attention.wo.weight"], ga["attention.wo.bias"] = _linear_back(
        rd, G["h"], e_gh, V["o"], E["o"], W["attention.wo.weight"], ew.get("attention.wo.weight"))
    e_go = gi_o.view(b, s, nh, hd)
    g_o = G["o"].view(b, s, nh, hd)
    goa = g_o.abs()
    m_gp = torch.einsum("bqhd,bkhd->bhqk", goa + e_go, va + E["ve"])
    e_gp = (rd.sum_of(m_gp, hd) + torch.einsum("bqhd,bkhd->bhqk", e_go, va)
            + torch.einsum("bqhd,bkhd->bhqk", goa, E["ve"]))
    m_gve = torch.einsum("bhqk,bqhd->bkhd", p + E["p"], goa + e_go)
    e_gve = (rd.sum_of(m_gve, s) + torch.einsum("bhqk,bqhd->bkhd", E["p"], goa)
             + torch.einsum("bhqk,bqhd->bkhd", p, e_go))
    g_p = G["p"]
    gpa = g_p.abs()
    centre = (p * g_p).sum(-1, keepdim=True)
    e_gs = (p * (e_gp + (p * e_gp).sum(-1, keepdim=True)) + E["p"] * (g_p - centre).abs()
            + p * (E["p"] * gpa).sum(-1, keepdim=True)
            + rd.own(s * rd.ua + 3 * rd.u, p * (gpa + (p * gpa).sum(-1, keepdim=True))))
    gsa = G["sc"].abs() / root  # the grad of the unscaled scores q·k: the scores' grad over √hd
    e_gs = e_gs / root + rd.own(rd.u, gsa)
    m_gq = torch.einsum("bhqk,bkhd->bqhd", gsa + e_gs, ka + E["ke"])
    e_gqr = (rd.sum_of(m_gq, s) + torch.einsum("bhqk,bkhd->bqhd", e_gs, ka)
             + torch.einsum("bhqk,bkhd->bqhd", gsa, E["ke"]))
    m_gk = torch.einsum("bhqk,bqhd->bkhd", gsa + e_gs, qa + E["qr"])
    e_gke = (rd.sum_of(m_gk, s) + torch.einsum("bhqk,bqhd->bkhd", e_gs, qa)
             + torch.einsum("bhqk,bqhd->bkhd", gsa, E["qr"]))
    e_gkr = _group_sum(e_gke, nkv) + rd.sum_of(_group_sum(G["ke"].abs() + e_gke, nkv), rep)
    e_gv = _group_sum(e_gve, nkv) + rd.sum_of(_group_sum(G["ve"].abs() + e_gve, nkv), rep)
    e_gq = _rope(rd, G["qr"], e_gqr, cos, sin)
    e_gk = _rope(rd, G["kr"], e_gkr, cos, sin)
    n1, en1 = V["n1"], E["n1"]
    giq, ga["attention.wq.weight"], ga["attention.wq.bias"] = _linear_back(
        rd, G["q"].reshape(b, s, -1), e_gq.reshape(b, s, -1), n1, en1, W["attention.wq.weight"], ew.get("attention.wq.weight"))
    gik, ga["attention.wk.weight"], ga["attention.wk.bias"] = _linear_back(
        rd, G["k"].reshape(b, s, -1), e_gk.reshape(b, s, -1), n1, en1, W["attention.wk.weight"], ew.get("attention.wk.weight"))
    giv, ga["attention.wv.weight"], ga["attention.wv.bias"] = _linear_back(
        rd, G["v"].reshape(b, s, -1), e_gv.reshape(b, s, -1), n1, en1, W["attention.wv.weight"], ew.get("attention.wv.weight"))
    e_gn1 = giq + gik + giv + rd.own(2 * rd.u, G["n1"].abs())
    e_gx1, ga["attention_norm.weight"] = _norm_back(rd, V["x"], ex, W["attention_norm.weight"], G["n1"], e_gn1,
                                               ew.get("attention_norm.weight"))
    out["input_grad"] = e_gh + e_gx1 + rd.own(rd.u, G["x"].abs())
    out.update({f"grad:{k}": t for k, t in ga.items() if k in W})
    return out


def adamw_direction_spread(g: torch.Tensor, e_g: torch.Tensor, eps: float) -> torch.Tensor:
    """How far AdamW's first-step direction ``f(ĝ) = ĝ/(|ĝ| + eps)`` can be from ``f(g)`` for ``|ĝ − g| ≤ e_g``:
    ``f`` is increasing, so ``f(g + e_g) − f(g − e_g)`` (computed in float64) bounds it exactly — near a zero
    grad up to 2 (its sign unknown), elsewhere ``≈ 2·e_g·eps/g²``."""
    def f(t):
        return t / (t.abs() + eps)
    return f(g + e_g) - f(g - e_g)


def stepped_weight_errors(optimizer: str, settings: dict, weights: dict, grads: dict, grad_bounds: dict,
                          dtype: torch.dtype, ws: int) -> dict[str, torch.Tensor]:
    """How far each parameter a rank holds after one optimizer step (``torch.optim``, from ``weights`` and its
    grad, off the dense ``grads`` by at most ``grad_bounds``) may be from the same step taken in float64.

    - SGD ``w − lr·ĝ``: ``lr·E_g`` carried, own ``2u(|w| + lr(|g| + E_g))`` (the product and the difference);
    - AdamW's first step ``w(1 − lr·λ) − lr·ĝ/(|ĝ| + eps)`` (``m̂ = ĝ``, ``v̂ = ĝ²`` after the bias corrections):
      ``lr`` × :func:`adamw_direction_spread` carried, own ``12u(|w| + lr)`` (the decay's two roundings, the
      moments', the square root's, the bias corrections', the quotient's and the update's: each ``u`` of a
      term at most ``|w|`` or ``lr``, the direction's magnitude being below 1)."""
    rd, lr, out = Rounding(dtype, ws), settings["lr"], {}
    for name, w in weights.items():
        g, e_g = grads[name], grad_bounds[name]
        if optimizer == "sgd":
            out[name] = lr * e_g + rd.own(2 * rd.u, w.abs() + lr * (g.abs() + e_g))
        else:
            eps = settings.get("eps", 1e-8)
            out[name] = lr * adamw_direction_spread(g, e_g, eps) + rd.own(12 * rd.u, w.abs() + lr)
    return out
