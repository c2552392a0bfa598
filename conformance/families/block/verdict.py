"""A transformer block parallelised by the impl's own plan, checked against the dense block (verdict side).

The suite's dense Llama-style block (:mod:`tpconform.families.block.dense`) is built on every rank in the
case's dtype and handed to the impl's ``parallelize_block(block, group)``. Every rank feeds the whole
input ``x [batch, seq, hidden]`` and back-propagates the same upstream grad. Truth:
the same block in float64 from the same (already rounded) numbers; bounds: :mod:`~.bounds`.

1. **output**: every rank returns the dense output;
2. **input grad**: every rank's input grad is the dense one;
3. **parameter grads**: every dense parameter is on every rank, its grad the matching slice of the
   dense grad (a sharded one where its placement puts it, a replicated one whole);
4. **what the plan cannot express is refused**: for a config whose head counts or FFN width do not
   divide by the world size (kv heads fewer than ranks included), the impl either refuses it on every
   rank while parallelising, or computes the dense block; never an error mid-forward, never a wrong
   result;
5. **collectives**: the forward runs exactly two all-reduces (self-reported: counted in the rank's process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tpconform.families.block.bounds import block_bounds, trace
from tpconform.families.block.case import BlockCase
from tpconform.families.block.dense import block_weights, build_block
from tpconform.families.common import compare_on_rank, preconditions, run_on_every_rank
from tpconform.spec.violations import Violation, construction_raised


@dataclass
class BlockTensors:
    weights: dict[str, torch.Tensor]  # every parameter by name, the case's dtype
    x: torch.Tensor
    grad_out: torch.Tensor


def make_tensors(case: BlockCase) -> BlockTensors:
    gen = torch.Generator().manual_seed(case.seed)
    weights = block_weights(case, gen)
    shape = (case.batch, case.seq, case.hidden)

    def normal(scale: float) -> torch.Tensor:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(case.torch_dtype)

    return BlockTensors(weights, normal(case.scale), normal(1.0))


@dataclass
class DenseBlock:
    output: torch.Tensor
    input_grad: torch.Tensor
    grads: dict[str, torch.Tensor]
    bounds: dict[str, torch.Tensor]  # output, input_grad, grad:<name>


def dense_block(case: BlockCase, t: BlockTensors) -> DenseBlock:
    """The float64 block (the same module the ranks get), its grads, and their bounds."""
    block = build_block(case, torch.float64, t.weights)
    x = t.x.detach().double().clone().requires_grad_(True)
    y = block(x)
    y.backward(t.grad_out.double())
    grads = {n: p.grad.detach() for n, p in block.named_parameters()}
    bounds = block_bounds(case, trace(t.weights, case, t.x, t.grad_out), case.torch_dtype, case.world_size)
    return DenseBlock(y.detach(), x.grad, grads, bounds)


@dataclass
class BlockEvidence:
    case: BlockCase
    tensors: BlockTensors
    ranks: list[dict]
    crash: Optional[str]
    dense: DenseBlock


BlockProperty = Callable[[BlockEvidence], list[Violation]]
BLOCK_SPEC: dict[str, BlockProperty] = {}
FORWARD = ("block_output_matches_the_dense_block", "block_refuses_what_its_plan_cannot_express",
           "block_forward_runs_one_all_reduce_per_sublayer")
# evidence measured inside the candidate's process (its collectives, counted in its worker): no points
SELF_REPORTED = frozenset({"block_forward_runs_one_all_reduce_per_sublayer"})


def block_property(fn: BlockProperty) -> BlockProperty:
    BLOCK_SPEC[fn.__name__] = fn
    return fn


def _every_rank(name: str, ev: BlockEvidence, key: str, expected, bound, what: str) -> list[Violation]:
    return [v for r, res in enumerate(ev.ranks) for v in compare_on_rank(name, r, res.get(key), expected, bound, what)]


@block_property
def block_output_matches_the_dense_block(ev: BlockEvidence) -> list[Violation]:
    """Every rank returns the dense block's output."""
    d = ev.dense
    return _every_rank("block_output_matches_the_dense_block", ev, "output", d.output, d.bounds["output"], "output")


@block_property
def block_input_grad_matches_the_dense_block(ev: BlockEvidence) -> list[Violation]:
    """Every rank's input grad is the dense block's."""
    d = ev.dense
    return _every_rank("block_input_grad_matches_the_dense_block", ev, "input_grad", d.input_grad,
                       d.bounds["input_grad"], "input grad")


def _slices(where, shape: torch.Size) -> Optional[tuple[slice, ...]]:
    """A rank's ``[[start, stop], …]`` as slices of a dense parameter of ``shape``; ``None`` if malformed."""
    if not isinstance(where, list) or len(where) != len(shape):
        return None
    out = []
    for pair, n in zip(where, shape):
        if not (isinstance(pair, list) and len(pair) == 2 and all(type(i) is int for i in pair)
                and 0 <= pair[0] <= pair[1] <= n):
            return None
        out.append(slice(pair[0], pair[1]))
    return tuple(out)


@block_property
def block_parameter_grads_match_the_dense_block(ev: BlockEvidence) -> list[Violation]:
    """Every dense parameter is on every rank, its grad the dense grad's slice where the rank's part sits
    (the whole grad for a replicated parameter: norms, the row projections' biases)."""
    name, d, out = "block_parameter_grads_match_the_dense_block", ev.dense, []
    for r, res in enumerate(ev.ranks):
        params = res.get("parameters")
        params = params if isinstance(params, dict) else {}
        for pname, grad in d.grads.items():
            got = params.get(pname)
            if not isinstance(got, dict):
                out.append(Violation(name, f"rank {r} has no parameter {pname} after parallelising", r, pname))
                continue
            where = _slices(got.get("where"), grad.shape)
            if where is None:
                out.append(Violation(name, f"rank {r}'s {pname}: where its part sits in the dense parameter is not "
                                           f"known (a plain tensor of another shape without tp_dense_slice): "
                                           f"{got.get('where')!r}", r, pname))
                continue
            out += compare_on_rank(name, r, got.get("grad"), grad[where], d.bounds[f"grad:{pname}"][where],
                                   f"{pname} grad")
    return out


@block_property
def block_refuses_what_its_plan_cannot_express(ev: BlockEvidence) -> list[Violation]:
    """A config whose heads, kv heads or FFN width do not divide by the world size is refused on every rank
    while parallelising, or computed right: never an error mid-forward, never a silently wrong result."""
    name, c = "block_refuses_what_its_plan_cannot_express", ev.case
    if c.expressible:
        return []
    if ev.crash:
        return [Violation(name, f"{_inexpressible(c)}: it was not refused while parallelising, and the example "
                                f"failed after it: {ev.crash}", None, "run")]
    failed = ev.ranks[0].get("construct_failed_ranks") if ev.ranks else None
    if failed is not None:
        if len(failed) == len(ev.ranks):
            return []
        return [Violation(name, _construction_failed(ev, failed), None, "construction")]
    wrong = block_output_matches_the_dense_block(ev)
    return [Violation(name, f"{_inexpressible(c)}: accepted without an error, and {v.message}", v.rank, "output",
                      v.mismatch) for v in wrong]


def _inexpressible(c: BlockCase) -> str:
    return (f"n_heads={c.n_heads}, n_kv_heads={c.n_kv_heads}, ffn={c.ffn} over {c.world_size} ranks "
            "(not all divisible)")


def _is_all_reduce(call: str) -> bool:
    """c10d's ``allreduce_`` or the functional collectives' ``all_reduce`` (DTensor's)."""
    return call.split("(", 1)[0].startswith(("allreduce", "all_reduce"))


@block_property
def block_forward_runs_one_all_reduce_per_sublayer(ev: BlockEvidence) -> list[Violation]:
    """Without sequence parallelism the forward's only collectives are two all-reduces, one closing the
    attention (after ``wo``) and one closing the FFN (after ``w2``): activations between the column and row
    projections stay sharded. (A world of one rank may run none.)"""
    name, out = "block_forward_runs_one_all_reduce_per_sublayer", []
    for r, res in enumerate(ev.ranks):
        calls = res.get("forward_collectives")
        calls = [str(c) for c in calls] if isinstance(calls, list) else []
        reduces = [c for c in calls if _is_all_reduce(c)]
        if len(reduces) != len(calls) or len(reduces) > 2 or (ev.case.world_size > 1 and len(reduces) < 2):
            out.append(Violation(name, f"rank {r}'s forward ran {len(calls)} collective(s) {calls} (elements sent in "
                                       "parentheses); a block without sequence parallelism needs exactly two "
                                       "all-reduces", r, "communication"))
    return out


def _construction_failed(ev: BlockEvidence, failed: list[int]) -> str:
    return construction_raised(failed, {r: res.get("construct_error") for r, res in enumerate(ev.ranks)},
                               " (parallelize_block)")


def evidence(suite, case: BlockCase) -> Optional[BlockEvidence]:
    """Run ``case`` on ``case.world_size`` ranks; ``None`` when the impl offers no ``parallelize_block``."""
    t = make_tensors(case)
    ranks, crash = run_on_every_rank(suite, case, "run_block",
                                     {"weights": t.weights, "x": t.x, "grad_out": t.grad_out})
    if ranks and ranks[0].get("not_provided"):
        return None
    return BlockEvidence(case, t, ranks, crash, dense_block(case, t))


def violations(suite, case: BlockCase, prop: str, ev: Optional[BlockEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    if prop == "block_refuses_what_its_plan_cannot_express":
        return BLOCK_SPEC[prop](ev)
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: _construction_failed(ev, failed),
                        rejection_declared=not ev.case.expressible)
    return pre if pre is not None else BLOCK_SPEC[prop](ev)
