"""Likely causes: symptoms of the classic tensor-parallel bugs, recognised in a failed example."""

from __future__ import annotations

from typing import Optional

import torch

from conformance.properties import Evidence, Violation


def _ratio(actual: torch.Tensor, expected: torch.Tensor) -> Optional[float]:
    """The scalar ``k`` with ``actual ≈ k·expected``, if there is one."""
    a, e = actual.double().flatten(), expected.double().flatten()
    if e.numel() == 0 or float(e.abs().max()) == 0:
        return None
    k = float((a * e).sum() / (e * e).sum())
    if float((a - k * e).abs().max()) <= 1e-2 * float(e.abs().max()) * max(abs(k), 1):
        return k
    return None


def likely_cause(ev: Evidence, v: Violation) -> Optional[str]:
    case, ws, t = ev.case, ev.case.world_size, ev.outcome.tensors
    res = ev.ranks[v.rank] if v.rank is not None and v.rank < len(ev.ranks) else None
    if v.quantity == "output" and res is not None and res.get("output") is not None:
        out = res["output"]
        if not ev.output_is_sharded and out.shape[-1:] != (case.out_features,) and ws > 1:
            if out.shape[-1] == ev.partition()[v.rank]:
                return "the output has this rank's share of out_features: the local shard was returned without an all-gather"
        if out.shape == ev.dense.output.shape and out.numel():
            diff = out.double() - ev.dense.output
            if t.bias is not None and case.kind == "row" and ws > 1:
                k = _ratio(diff, t.bias.double().expand_as(diff))
                if k is not None and abs(k - (ws - 1)) < 0.25:
                    return f"the output is off by {ws - 1}× the bias: the bias is added on every rank, before the all-reduce"
            if case.kind == "row" and ws > 1:
                y_nb = ev.dense.output - (0 if t.bias is None else t.bias.double())
                k = _ratio(out.double() - (0 if t.bias is None else t.bias.double()), y_nb)
                if k is not None and abs(k - 1) > 0.05:
                    return f"the output is ~{k:.2f}× the dense product: check the all-reduce"
    if v.quantity in ("weight grad", "input grad", "bias grad") and v.mismatch and res is not None:
        key = {"weight grad": "weight_grad", "input grad": "input_grad", "bias grad": "bias_grad"}[v.quantity]
        actual = res.get(key)
        expected = None
        if key == "input_grad":
            expected = ev.dense.input_grad if not ev.input_is_sliced else ev.dense.input_grad[..., ev.rank_slice(v.rank)]
        if actual is not None and expected is not None and actual.shape == expected.shape:
            k = _ratio(actual, expected)
            if k is not None and ws > 1 and abs(k - ws) < 0.25:
                return f"the {v.quantity} is {ws}× too large: a backward sums across ranks where it should not"
            if k is not None and ws > 1 and abs(k * ws - 1) < 0.25:
                return f"the {v.quantity} is {ws}× too small: averaged over ranks, or a backward all-reduce is missing"
        if key == "input_grad" and case.kind == "column" and ws > 1:
            return "column input grad: the backward all-reduce of the input grad may be missing"
    if v.quantity == "weight shard" and "do not rebuild" in v.message:
        return "the weight may be split along the wrong dim, or in a different rank order"
    return None
