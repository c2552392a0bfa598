"""The four collective autograd functions on their own (verdict side).

Users often ship these (Megatron's ``mappings.py``) and build more than linear layers on them, so
each is checked against its dense meaning on ``world_size`` ranks, on inputs of any shape (odd and
empty sides, 1–3 dims) in contiguous, strided and transposed memory layouts:

- ``copy_to``: forward ``x`` (the same ``x`` on every rank); backward the sum over ranks of the
  upstream grads;
- ``reduce_from``: forward the sum over ranks of the inputs; backward the upstream grad (the same
  on every rank);
- ``scatter_to``: forward this rank's slice of the last dim (the slices, in rank order, rebuild
  ``x``); backward the full grad, every rank's grad slice concatenated;
- ``gather_from``: forward the ranks' (equal-shaped) inputs concatenated along the last dim;
  backward this rank's slice of the (replicated) upstream grad.

Moves and copies must be exact; sums are within :func:`tpconform.spec.tolerance.bound` for a
reduction of ``world_size`` terms. The split convention of ``scatter_to`` is read from its output
shapes, as for the layers. Nothing may modify its input or upstream grad in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tpconform.families.common import (
    compare_on_rank,
    did_not_complete,
    not_offered,
    rank_slice,
    run_built_first,
    run_on_every_rank,
    width_of,
)
from tpconform.families.primitives.case import PrimitiveCase
from tpconform.spec import tolerance as tol
from tpconform.spec.partition import partition
from tpconform.spec.violations import Violation

# the tensors that differ per rank; the rest are the same on every rank (replicated)
_PER_RANK_X = {"reduce_from", "gather_from"}
_PER_RANK_G = {"copy_to"}


@dataclass
class PrimitiveTensors:
    xs: list[torch.Tensor]  # each rank's input
    gs: list[torch.Tensor]  # each rank's upstream grad (scatter_to: the full grad; each rank is sent its slice)


def make_primitive_tensors(case: PrimitiveCase) -> PrimitiveTensors:
    gen = torch.Generator().manual_seed(case.seed)

    def draw(shape, per_rank: bool) -> list[torch.Tensor]:
        n = case.world_size if per_rank else 1
        ts = [torch.randn(*shape, generator=gen, dtype=torch.float64).to(case.torch_dtype) for _ in range(n)]
        return ts if per_rank else ts * case.world_size

    return PrimitiveTensors(xs=draw(case.shape, case.primitive in _PER_RANK_X),
                            gs=draw(case.output_shape, case.primitive in _PER_RANK_G))


@dataclass
class PrimitiveEvidence:
    case: PrimitiveCase
    tensors: PrimitiveTensors
    ranks: list[dict]
    crash: Optional[str]

    @property
    def provided(self) -> bool:
        return bool(self.ranks) and not not_offered(self.ranks)

    def scatter_slices(self) -> list[slice]:
        """Each rank's slice of the last dim, read from its ``scatter_to`` output's width."""
        widths = [int(r["output"].shape[-1]) if r["output"].dim() else -1 for r in self.ranks]
        widths = partition(widths, self.case.shape[-1], self.case.world_size)
        return [rank_slice(widths, r) for r in range(len(widths))]


def _sum_bound(ts: list[torch.Tensor], dtype: torch.dtype, ws: int) -> torch.Tensor:
    return tol.bound(sum(t.double().abs() for t in ts), ws, dtype, ws)


def expected_forward(ev: PrimitiveEvidence, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``r``'s dense forward result and its per-element tolerance (zero: exact)."""
    c, xs = ev.case, [x.double() for x in ev.tensors.xs]
    if c.primitive == "copy_to":
        y = xs[r]
    elif c.primitive == "reduce_from":
        return sum(xs), _sum_bound(ev.tensors.xs, c.torch_dtype, c.world_size)
    elif c.primitive == "scatter_to":
        y = xs[r][..., ev.scatter_slices()[r]]
    else:
        y = torch.cat(xs, dim=-1)
    return y, torch.zeros_like(y)


def expected_backward(ev: PrimitiveEvidence, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``r``'s dense input grad and its per-element tolerance (zero: exact)."""
    c, gs = ev.case, [g.double() for g in ev.tensors.gs]
    if c.primitive == "copy_to":
        return sum(gs), _sum_bound(ev.tensors.gs, c.torch_dtype, c.world_size)
    if c.primitive == "gather_from":
        w = c.shape[-1]
        g = gs[r][..., r * w:(r + 1) * w]
    else:  # reduce_from: identity; scatter_to: the full grad, every rank's slice gathered back
        g = gs[r]
    return g, torch.zeros_like(g)


PrimitiveProperty = Callable[[PrimitiveEvidence], list[Violation]]
PRIMITIVE_SPEC: dict[str, PrimitiveProperty] = {}
# evidence measured inside the candidate's process (in-place flags its worker sets): no points
SELF_REPORTED = frozenset({"primitive_leaves_its_inputs_untouched"})


def primitive_property(fn: PrimitiveProperty) -> PrimitiveProperty:
    PRIMITIVE_SPEC[fn.__name__] = fn
    return fn


def _every_rank_matches(name: str, ev: PrimitiveEvidence, key: str, what: str, expected) -> list[Violation]:
    """Each rank's ``key`` against ``expected(ev, rank)`` (the dense value and its tolerance)."""
    out = []
    for r, res in enumerate(ev.ranks):
        value, bound = expected(ev, r)
        out += compare_on_rank(name, r, res.get(key), value, bound, what, f"{ev.case.primitive} {what}")
    return out


@primitive_property
def primitive_forward_matches_its_dense_meaning(ev: PrimitiveEvidence) -> list[Violation]:
    return _every_rank_matches("primitive_forward_matches_its_dense_meaning", ev, "output", "output",
                               expected_forward)


@primitive_property
def primitive_backward_matches_its_dense_meaning(ev: PrimitiveEvidence) -> list[Violation]:
    return _every_rank_matches("primitive_backward_matches_its_dense_meaning", ev, "input_grad", "input grad",
                               expected_backward)


@primitive_property
def primitive_leaves_its_inputs_untouched(ev: PrimitiveEvidence) -> list[Violation]:
    name, out = "primitive_leaves_its_inputs_untouched", []
    for r, res in enumerate(ev.ranks):
        for key, what in (("input_modified", "its input"), ("grad_modified", "the upstream grad")):
            if res.get(key):
                note = res.get("input_modified_note") if key == "input_modified" else None
                how = f" (on a leaf input that requires grad it raised {note})" if note else ""
                out.append(Violation(name, f"rank {r}'s {ev.case.primitive} modified {what} in place{how}", r, what))
    return out


def evidence(suite, case: PrimitiveCase) -> PrimitiveEvidence:
    """Run ``case``. Each rank is sent its own input and upstream grad; ``scatter_to``'s upstream grad is
    the rank's slice alone (whole, a rank could return it as its input grad and skip the all-gather),
    along the split its forward outputs show (a forward-only round first,
    :func:`~tpconform.families.common.run_built_first`)."""
    t = make_primitive_tensors(case)
    if case.primitive != "scatter_to":
        ranks, crash = run_on_every_rank(suite, case, "run_primitive", lambda r: {"x": t.xs[r], "g": t.gs[r]})
        return PrimitiveEvidence(case, t, ranks, crash)

    def share(r: int, parts: list[int]) -> dict:
        return {"x": t.xs[r], "g": t.gs[r].narrow(-1, sum(parts[:r]), parts[r]).clone()}

    ranks, crash = run_built_first(suite, case, "run_primitive", {"x": t.xs[0], "g": None}, share,
                                   width_of("output", -1), case.shape[-1])
    return PrimitiveEvidence(case, t, ranks, crash)


def violations(suite, case: PrimitiveCase, prop: str, ev: Optional[PrimitiveEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev.crash:
        return [did_not_complete(prop, ev.crash)]
    return PRIMITIVE_SPEC[prop](ev) if ev.provided else []
