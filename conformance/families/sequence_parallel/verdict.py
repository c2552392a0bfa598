"""Sequence parallelism (verdict side): the sequence dim (dim 0) is sharded over the ranks too.

A case is a :class:`~tpconform.families.linear.case.LayerCase` whose ``batch_shape[0]`` is the sequence length
(a multiple of the world size); rank ``r`` owns sequence rows ``r·s/p … (r+1)·s/p``.

- **column** (``impl.column_sequence_parallel``): fed its sequence shard of ``x``, it returns its
  feature slice of the dense output for the *whole* sequence (all-gather forward), and its input
  grad is its sequence shard of the dense input grad (reduce-scatter backward);
- **row** (``impl.row_sequence_parallel``): fed its feature slice of the whole sequence, it returns
  its sequence shard of the dense output (reduce-scatter forward), bias included once;
- on both, each weight shard's grad is its slice of the dense weight grad, and the bias grad is
  the dense one — for the row layer that is the *sum over ranks* of what each sequence shard
  contributes: a bias grad left partial is a violation, unless the impl declares the finalisation
  its library leaves to the training loop (``impl.finalize_grads``, applied by the worker after
  backward and named in the report); the grads are then judged as it leaves them.

Tolerances are :mod:`tpconform.spec.tolerance`'s single-layer bounds (a reduce-scatter adds the same
``world_size − 1`` roundings as an all-reduce), sliced like the expected values.
"""

from __future__ import annotations

from typing import Optional

from tpconform.families.common import (
    compare_fields,
    compare_on_rank,
    not_offered,
    run_built_first,
    width_of,
)
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.dense import dense_linear
from tpconform.families.linear.results import RankResult
from tpconform.families.linear.run import Outcome
from tpconform.families.linear.tensors import make_tensors
from tpconform.families.linear.verdict import Evidence, Violation, preconditions
from tpconform.spec import tolerance as tol

SP_SPEC: dict = {}


def sp_property(fn):
    SP_SPEC[fn.__name__] = fn
    return fn


def _sequence(ev: Evidence, r: int) -> slice:
    n = ev.case.batch_shape[0] // ev.case.world_size
    return slice(r * n, (r + 1) * n)


@sp_property
def sequence_parallel_output_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    name, t, case, out = "sequence_parallel_output_matches_the_dense_layer", ev.outcome.tensors, ev.case, []
    y = ev.dense.output
    bound = tol.output_bound(t.x, t.weight, t.bias, case.torch_dtype, case.world_size)
    for r, res in enumerate(ev.ranks):
        s = ev.rank_slice(r) if case.kind == "column" else _sequence(ev, r)
        expected, b = (y[..., s], bound[..., s]) if case.kind == "column" else (y[s], bound[s])
        out += compare_on_rank(name, r, res.output, expected, b, "output")
    return out


@sp_property
def sequence_parallel_grads_match_the_dense_layer(ev: Evidence) -> list[Violation]:
    name, t, case, dn, out = "sequence_parallel_grads_match_the_dense_layer", ev.outcome.tensors, ev.case, ev.dense, []
    dt, ws = case.torch_dtype, case.world_size
    gx_b = tol.input_grad_bound(t.grad_out, t.weight, dt, ws)
    gw_b = tol.weight_grad_bound(t.grad_out, t.x, dt, ws)
    for r, res in enumerate(ev.ranks):
        f = ev.rank_slice(r)
        if case.kind == "column":
            s = _sequence(ev, r)
            checks = [("input_grad", dn.input_grad[s], gx_b[s]), ("weight_grad", dn.weight_grad[f], gw_b[f])]
        else:
            checks = [("input_grad", dn.input_grad[..., f], gx_b[..., f]),
                      ("weight_grad", dn.weight_grad[:, f], gw_b[:, f])]
        if t.bias is not None and (case.kind == "column" or res.bias_shard is not None):
            gb_b = tol.bias_grad_bound(t.grad_out, dt, ws)
            checks.append(("bias_grad", *((dn.bias_grad[f], gb_b[f]) if case.kind == "column"
                                          else (dn.bias_grad, gb_b))))
        out += compare_fields(name, r, res, checks)
    return out


def evidence(suite, case: LayerCase) -> Optional[Evidence]:
    """Run ``case``; ``None`` when the impl offers no sequence-parallel layer of that kind.

    A rank learns only what its rank may know: it is sent its sequence shard of what is sharded along
    the sequence (column: the input; row: the upstream grad) and its feature slice of the whole
    sequence of the other (column: the upstream grad; row: the input), along the partition its layer
    chose (a build-only round first, :func:`~tpconform.families.common.run_built_first`). Whole, a rank
    could compute the dense result alone and skip the collectives. The weight and bias are whole (the
    constructor takes the master weight, as every layer's does)."""
    t = make_tensors(case)
    data, n = t.as_dict(), case.batch_shape[0] // case.world_size
    column = case.kind == "column"

    def share(r: int, parts: list[int]) -> dict:
        f = (sum(parts[:r]), parts[r])
        x = t.x.narrow(0, r * n, n) if column else t.x.narrow(-1, *f)
        g = t.grad_out.narrow(-1, *f) if column else t.grad_out.narrow(0, r * n, n)
        return {**data, "x": x.clone(), "grad_out": g.clone()}

    ranks, crash = run_built_first(suite, case, "run_sequence_parallel",
                                   {"weight": t.weight, "bias": t.bias, "x": None, "grad_out": None}, share,
                                   width_of("weight_shard", 0 if column else 1),
                                   total=case.out_features if column else case.in_features)
    if not_offered(ranks):
        return None
    outcome = Outcome(case, t, ranks=[RankResult.from_wire(res) for res in ranks], crash=crash)
    return Evidence(case, outcome, dense_linear(t), suite.capabilities.of("sequence_parallel").uneven_shards)


def violations(suite, case: LayerCase, prop: str, ev: Optional[Evidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    pre = preconditions(ev, prop)
    return pre if pre is not None else SP_SPEC[prop](ev)
