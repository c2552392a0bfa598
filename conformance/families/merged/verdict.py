"""Merged column layers — QKV, gate-up (verdict side): several output blocks, each sharded on its own.

The dense layer is one ``nn.Linear`` whose weight is the blocks ``W_0, W_1, …`` stacked. On
``world_size`` ranks (every block's rows divide by it, as in Megatron's QKV and gate-up layers),
rank ``r`` must:

1. **shards**: hold rows ``r·n_b/p … (r+1)·n_b/p`` of *every* block ``b``, in block order — not
   the ``r``-th contiguous chunk of the stacked weight;
2. **output** (``merged_column_output_matches_the_dense_layer``: all that is judged of a layer declared
   forward-only) **and grads**: return those columns of the dense output (output left sharded), the
   dense input grad, and those rows of the dense weight and bias grads.

Tolerances: :mod:`tpconform.spec.tolerance`'s single-layer bounds, indexed like the expected values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tpconform.families.common import (
    compare_fields,
    not_offered,
    preconditions,
    run_on_every_rank,
)
from tpconform.families.linear.dense import DenseResult, dense_linear
from tpconform.families.linear.tensors import CaseTensors, make_tensors
from tpconform.families.merged.case import MergedCase
from tpconform.spec import tolerance as tol
from tpconform.spec.violations import Violation, construction_raised


@dataclass
class MergedEvidence:
    case: MergedCase
    tensors: CaseTensors
    ranks: list[dict]
    crash: Optional[str]
    dense: DenseResult


MERGED_SPEC: dict = {}


def merged_property(fn):
    MERGED_SPEC[fn.__name__] = fn
    return fn


@merged_property
def merged_column_shards_hold_each_blocks_slice(ev: MergedEvidence) -> list[Violation]:
    name, w, out = "merged_column_shards_hold_each_blocks_slice", ev.tensors.weight, []
    for r, res in enumerate(ev.ranks):
        expected, got = w[ev.case.rows(r)], res.get("weight_shard")
        if got is None or got.shape != expected.shape or not torch.equal(got, expected):
            where = ", ".join(f"block {b}: rows {r * n // ev.case.world_size}:{(r + 1) * n // ev.case.world_size}"
                              for b, n in enumerate(ev.case.blocks))
            out.append(Violation(name, f"rank {r}'s weight shard (shape {None if got is None else list(got.shape)}) "
                                       f"is not its slice of every block ({where}), in block order", r, "weight shard"))
    return out


@merged_property
def merged_column_output_matches_the_dense_layer(ev: MergedEvidence) -> list[Violation]:
    """Each rank's output is its columns of the dense output (its slice of every block): the forward
    alone, all that is judged of a layer declared forward-only (capability ``backward=False``)."""
    name, t, c = "merged_column_output_matches_the_dense_layer", ev.tensors, ev.case
    y_b = tol.output_bound(t.x, t.weight, t.bias, c.torch_dtype, c.world_size)
    out = []
    for r, res in enumerate(ev.ranks):
        i = c.rows(r)
        out += compare_fields(name, r, res, [("output", ev.dense.output[..., i], y_b[..., i])])
    return out


@merged_property
def merged_column_matches_the_dense_layer(ev: MergedEvidence) -> list[Violation]:
    name, t, dn, c = "merged_column_matches_the_dense_layer", ev.tensors, ev.dense, ev.case
    dt, ws = c.torch_dtype, c.world_size
    y_b = tol.output_bound(t.x, t.weight, t.bias, dt, ws)
    gx_b = tol.input_grad_bound(t.grad_out, t.weight, dt, ws)
    gw_b = tol.weight_grad_bound(t.grad_out, t.x, dt, ws)
    gb_b = tol.bias_grad_bound(t.grad_out, dt, ws)
    out = []
    for r, res in enumerate(ev.ranks):
        i = c.rows(r)
        checks = [("output", dn.output[..., i], y_b[..., i]), ("input_grad", dn.input_grad, gx_b),
                  ("weight_grad", dn.weight_grad[i], gw_b[i])]
        if t.bias is not None:
            checks.append(("bias_grad", dn.bias_grad[i], gb_b[i]))
        out += compare_fields(name, r, res, checks)
    return out


def _construction_failed(ev: MergedEvidence, failed: list[int]) -> str:
    errors = {r: res.get("construct_error") for r, res in enumerate(ev.ranks)}
    return construction_raised(failed, errors, " although every block divides evenly:")


def evidence(suite, case: MergedCase) -> Optional[MergedEvidence]:
    """Run ``case``; ``None`` when the impl offers no merged column layer."""
    t = make_tensors(case.layer_case())
    data = t.as_dict()

    def rank_data(r: int) -> dict:  # this rank's slice of every block of the upstream grad, never the whole of it
        ws, blocks = case.world_size, list(case.blocks)
        mine = [g.narrow(-1, r * (n // ws), n // ws) for g, n in zip(t.grad_out.split(blocks, -1), blocks)]
        return {**data, "grad_out": torch.cat(mine, dim=-1).clone()}

    ranks, crash = run_on_every_rank(suite, case, "run_merged", rank_data)
    if not_offered(ranks):
        return None
    return MergedEvidence(case, t, ranks, crash, dense_linear(t))


def violations(suite, case: MergedCase, prop: str, ev: Optional[MergedEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: _construction_failed(ev, failed))
    return pre if pre is not None else MERGED_SPEC[prop](ev)


# judged of a forward-only merged layer (capability backward=False); the rest read a backward pass
FORWARD = ("merged_column_shards_hold_each_blocks_slice", "merged_column_output_matches_the_dense_layer")
