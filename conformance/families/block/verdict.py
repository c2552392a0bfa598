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
5. **collectives**: the forward runs exactly two all-reduces, or under SP two all-gathers and two
   reduce-scatters (self-reported: counted in the rank's process);
6. **a second pass after one optimizer step**: after ``torch.optim``'s SGD or AdamW (``case.optimizer``) steps
   the module's parameters, each rank's parameters are the dense ones stepped in float64, and a second
   forward/backward's output, input grad and parameter grads are the stepped dense block's — within the
   first pass's bounds carried through the step (:func:`~.bounds.stepped_weight_errors`) and on through the
   block (``block_bounds(weight_errors=…)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tpconform.families.block.bounds import block_bounds, stepped_weight_errors, trace
from tpconform.families.block.case import STEP, BlockCase, sequence_shards
from tpconform.families.block.dense import block_weights, build_block, take_step
from tpconform.families.common import (
    compare_on_rank,
    preconditions,
    refused_or_computed_right,
    run_on_every_rank,
    truth_while_ranks_run,
)
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
    # after one optimizer step (``None``: not asked): the stepped weights, how far a rank's may be from
    # them (weight:<name>), and the second pass
    weights: Optional[dict[str, torch.Tensor]] = None
    after_step: Optional["DenseBlock"] = None


def _dense_pass(case: BlockCase, weights: dict, t: BlockTensors,
                weight_errors: Optional[dict] = None) -> DenseBlock:
    block = build_block(case, torch.float64, weights)
    x = t.x.detach().double().clone().requires_grad_(True)
    y = block(x)
    y.backward(t.grad_out.double())
    grads = {n: p.grad.detach() for n, p in block.named_parameters()}
    bounds = block_bounds(case, trace(weights, case, t.x, t.grad_out), case.torch_dtype, case.world_size,
                          weight_errors)
    return DenseBlock(y.detach(), x.grad, grads, bounds)


def dense_block(case: BlockCase, t: BlockTensors, step: bool = False) -> DenseBlock:
    """The float64 block (the same module the ranks get), its grads, and their bounds; with ``step``, the
    same after one ``case.optimizer`` step taken in float64 on the dense grads."""
    first = _dense_pass(case, t.weights, t)
    if not step:
        return first
    settings = STEP[case.optimizer]
    params = {n: w.double().clone().requires_grad_(True) for n, w in t.weights.items()}
    for n, p in params.items():
        p.grad = first.grads[n].clone()
    take_step(params.values(), case.optimizer, settings)
    stepped = {n: p.detach() for n, p in params.items()}
    errors = stepped_weight_errors(case.optimizer, settings, {n: w.double() for n, w in t.weights.items()},
                                   first.grads, {n: first.bounds[f"grad:{n}"] for n in stepped},
                                   case.torch_dtype, case.world_size)
    after = _dense_pass(case, stepped, t, errors)
    after.bounds.update({f"weight:{n}": e for n, e in errors.items()})
    first.weights, first.after_step = stepped, after
    return first


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
           "block_forward_runs_the_collectives_its_plan_implies")
STEP_PROPERTY = "block_second_pass_after_an_optimizer_step_matches"  # the only one that needs the step
# evidence measured inside the candidate's process (its collectives, counted in its worker): no points
SELF_REPORTED = frozenset({"block_forward_runs_the_collectives_its_plan_implies"})


def block_property(fn: BlockProperty) -> BlockProperty:
    BLOCK_SPEC[fn.__name__] = fn
    return fn


def _tensor(value) -> Optional[torch.Tensor]:
    """A reply's nested value as a tensor, or ``None`` (judged missing): the reply's type check
    (``spec/results.malformed``) sees only its top-level fields, and a forged value must not crash the verdict."""
    return value if isinstance(value, torch.Tensor) else None


def _rows(case: BlockCase, rank: int) -> slice:
    """Rank ``rank``'s tokens of the dense output and input grad: all, or under SP its sequence shard."""
    if not case.sequence_parallel:
        return slice(None)
    sizes = sequence_shards(case.seq, case.world_size)
    return slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))


def _every_rank(name: str, ev: BlockEvidence, key: str, expected, bound, what: str,
                replies: Optional[list] = None) -> list[Violation]:
    out = []
    for r, res in enumerate(replies if replies is not None else ev.ranks):
        rows = (slice(None), _rows(ev.case, r))
        out += compare_on_rank(name, r, _tensor(res.get(key)), expected[rows], bound[rows], what)
    return out


@block_property
def block_output_matches_the_dense_block(ev: BlockEvidence) -> list[Violation]:
    """Every rank returns the dense block's output (under sequence parallelism: its sequence shard of it)."""
    d = ev.dense
    return _every_rank("block_output_matches_the_dense_block", ev, "output", d.output, d.bounds["output"], "output")


@block_property
def block_input_grad_matches_the_dense_block(ev: BlockEvidence) -> list[Violation]:
    """Every rank's input grad is the dense block's (under sequence parallelism: its sequence shard of it)."""
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


def _parameters(name: str, replies: list, expected: dict, bounds: dict, field: str, what: str) -> list[Violation]:
    """Every dense parameter on every rank, its ``field`` (``grad``, ``value``) the ``expected`` one's slice
    where the rank's part sits, within ``bounds``' same slice; and every element of it held by some rank (a
    part each rank says is empty, or parts that leave rows out, judge nothing there)."""
    out = []
    held = {pname: torch.zeros(dense.shape, dtype=torch.bool) for pname, dense in expected.items()}
    for r, res in enumerate(replies):
        params = res.get("parameters")
        params = params if isinstance(params, dict) else {}
        for pname, dense in expected.items():
            got = params.get(pname)
            if not isinstance(got, dict):
                out.append(Violation(name, f"rank {r} has no parameter {pname} after parallelising", r, pname))
                continue
            where = _slices(got.get("where"), dense.shape)
            if where is None:
                why = got.get("where_note")
                why = why if isinstance(why, str) else "a plain tensor of another shape without tp_dense_slice"
                out.append(Violation(name, f"rank {r}'s {pname}: where its part sits in the dense parameter is not "
                                           f"known ({why}): {got.get('where')!r}", r, pname))
                continue
            held[pname][where] = True
            out += compare_on_rank(name, r, _tensor(got.get(field)), dense[where], bounds[pname][where],
                                   f"{pname} {what}")
    if out:
        return out
    for pname, mask in held.items():
        if not bool(mask.all()):
            first = [int(i) for i in (~mask).nonzero()[0]]
            out.append(Violation(name, f"no rank holds {int((~mask).sum())} element(s) of {pname} (the first at "
                                       f"{first}): the parts the ranks say they hold leave them out", None, pname))
    return out


@block_property
def block_parameter_grads_match_the_dense_block(ev: BlockEvidence) -> list[Violation]:
    """Every dense parameter is on every rank, its grad the dense grad's slice where the rank's part sits
    (the whole grad for a replicated parameter: norms, the row projections' biases — under sequence
    parallelism too, where each rank's norm sees only its tokens and the grads must be summed over the ranks)."""
    d = ev.dense
    return _parameters("block_parameter_grads_match_the_dense_block", ev.ranks, d.grads,
                       {n: d.bounds[f"grad:{n}"] for n in d.grads}, "grad", "grad")


@block_property
def block_second_pass_after_an_optimizer_step_matches(ev: BlockEvidence) -> list[Violation]:
    """After one optimizer step (SGD or AdamW, ``torch.optim``, on the module's parameters) every rank's
    parameters are the dense ones stepped in float64 (their slices), and a second forward and backward gives
    the stepped dense block's output, input grad and parameter grads: the module computes with what the
    step left in its parameters (no stale copy), and replicated parameters stay equal on every rank."""
    name, d, c = STEP_PROPERTY, ev.dense, ev.case
    after = d.after_step
    if after is None or d.weights is None:
        return [Violation(name, "the example ran without the optimizer step", None, "run")]
    replies, out = [], []
    for r, res in enumerate(ev.ranks):
        second = res.get("after_step")
        if not isinstance(second, dict):
            out.append(Violation(name, f"rank {r} returned no second pass after the {c.optimizer} step", r, "run"))
            second = {}
        replies.append(second)
    if out:
        return out
    step = f"after one {c.optimizer} step"
    out += _parameters(name, replies, d.weights, {n: after.bounds[f"weight:{n}"] for n in d.weights}, "value", step)
    out += _every_rank(name, ev, "output", after.output, after.bounds["output"], f"output {step}", replies)
    out += _every_rank(name, ev, "input_grad", after.input_grad, after.bounds["input_grad"], f"input grad {step}",
                       replies)
    out += _parameters(name, replies, after.grads, {n: after.bounds[f"grad:{n}"] for n in after.grads}, "grad",
                       f"grad {step}")
    return out


@block_property
def block_refuses_what_its_plan_cannot_express(ev: BlockEvidence) -> list[Violation]:
    """A config whose heads, kv heads or FFN width (or, under sequence parallelism, the sequence) do not divide
    by the world size is refused on every rank while parallelising, or computed right: never an error
    mid-forward, never a silently wrong result."""
    name, c = "block_refuses_what_its_plan_cannot_express", ev.case
    if c.expressible:
        return []
    return refused_or_computed_right(name, _inexpressible(c), ev.crash, ev.ranks,
                                     lambda failed: _construction_failed(ev, failed),
                                     lambda: block_output_matches_the_dense_block(ev), quantity="output")


def _inexpressible(c: BlockCase) -> str:
    seq = f", a sequence-parallel seq={c.seq}" if c.sequence_parallel else ""
    return (f"n_heads={c.n_heads}, n_kv_heads={c.n_kv_heads}, ffn={c.ffn}{seq} over {c.world_size} ranks "
            "(not all divisible)")


def _kind(call: str) -> str:
    """A counted call's collective, c10d's or the functional collectives' (DTensor's) spelling alike:
    ``allreduce_``/``all_reduce`` -> ``allreduce``; ``_allgather_base_``/``all_gather_into_tensor`` ->
    ``allgather``; ``reduce_scatter_tensor`` -> ``reducescatter``; anything else as it is."""
    op = call.split("(", 1)[0].replace("_", "")
    for kind in ("allreduce", "allgather", "reducescatter"):
        if kind in op:
            return kind
    return op


@block_property
def block_forward_runs_the_collectives_its_plan_implies(ev: BlockEvidence) -> list[Violation]:
    """Without sequence parallelism the forward's only collectives are two all-reduces, one closing the
    attention (after ``wo``) and one closing the FFN (after ``w2``): activations between the column and row
    projections stay sharded. Under sequence parallelism each all-reduce becomes an all-gather of the
    sublayer's input and a reduce-scatter of its output: two of each, nothing else. (A world of one rank may
    run none.)"""
    name, out = "block_forward_runs_the_collectives_its_plan_implies", []
    wanted = ("allgather", "reducescatter") if ev.case.sequence_parallel else ("allreduce",)
    needs = ("one all-gather and one reduce-scatter per sublayer (two of each)" if ev.case.sequence_parallel
             else "exactly two all-reduces")
    for r, res in enumerate(ev.ranks):
        calls = res.get("forward_collectives")
        calls = [str(c) for c in calls] if isinstance(calls, list) else []
        kinds = [_kind(c) for c in calls]
        counts = [kinds.count(k) for k in wanted]
        if (any(k not in wanted for k in kinds) or any(n > 2 for n in counts)
                or (ev.case.world_size > 1 and any(n < 2 for n in counts))):
            out.append(Violation(name, f"rank {r}'s forward ran {len(calls)} collective(s) {calls} (elements sent in "
                                       f"parentheses); a block {'with' if ev.case.sequence_parallel else 'without'} "
                                       f"sequence parallelism needs {needs}", r, "communication"))
    return out


def _construction_failed(ev: BlockEvidence, failed: list[int]) -> str:
    return construction_raised(failed, {r: res.get("construct_error") for r, res in enumerate(ev.ranks)},
                               " (parallelize_block)")


def evidence(suite, case: BlockCase, step: bool = True) -> Optional[BlockEvidence]:
    """Run ``case`` on ``case.world_size`` ranks (with ``step``: one optimizer step and a second pass after
    the first); ``None`` when the impl offers no ``parallelize_block``. Under sequence parallelism each rank
    is sent only its sequence shard of the input and of the upstream grad."""
    t = make_tensors(case)
    whole = {"weights": t.weights, "x": t.x, "grad_out": t.grad_out, "step": step}

    def share(r: int) -> dict:
        rows = (slice(None), _rows(case, r))
        return {**whole, "x": t.x[rows].clone(), "grad_out": t.grad_out[rows].clone()}

    meanwhile, dense = truth_while_ranks_run(lambda: dense_block(case, t, step=step))
    ranks, crash = run_on_every_rank(suite, case, "run_block", share if case.sequence_parallel else whole, meanwhile)
    if ranks and ranks[0].get("not_provided"):
        return None
    return BlockEvidence(case, t, ranks, crash, dense())


def violations(suite, case: BlockCase, prop: str, ev: Optional[BlockEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    if prop == "block_refuses_what_its_plan_cannot_express":
        return BLOCK_SPEC[prop](ev)
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: _construction_failed(ev, failed),
                        rejection_declared=not ev.case.expressible)
    return pre if pre is not None else BLOCK_SPEC[prop](ev)


def error_ratios(ev: BlockEvidence) -> dict[str, float]:
    """The largest ``|got − dense| / bound`` per quantity over the ranks (well-shaped replies only): how close
    a correct plan comes to the bounds (``benchmarks/false_failures.py``)."""
    d, out = ev.dense, {}  # type: tuple[DenseBlock, dict[str, float]]

    def worst(key: str, got, expected, bound) -> None:
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and expected.numel():
            out[key] = max(out.get(key, 0.0), float(((got.double() - expected).abs() / bound).max()))

    def one_pass(replies: list, dense: DenseBlock, prefix: str, weights: Optional[dict]) -> None:
        for r, res in enumerate(replies):
            rows = (slice(None), _rows(ev.case, r))
            worst(f"{prefix}output", res.get("output"), dense.output[rows], dense.bounds["output"][rows])
            worst(f"{prefix}input_grad", res.get("input_grad"), dense.input_grad[rows], dense.bounds["input_grad"][rows])
            params = res.get("parameters") if isinstance(res.get("parameters"), dict) else {}
            for name, grad in dense.grads.items():
                got = params.get(name) if isinstance(params.get(name), dict) else {}
                where = _slices(got.get("where"), grad.shape)
                if where is None:
                    continue
                worst(f"{prefix}parameter_grads", got.get("grad"), grad[where], dense.bounds[f"grad:{name}"][where])
                if weights is not None:
                    worst("stepped_weights", got.get("value"), weights[name][where],
                          dense.bounds[f"weight:{name}"][where])

    one_pass(ev.ranks, d, "", None)
    if d.after_step is not None and all(isinstance(res.get("after_step"), dict) for res in ev.ranks):
        one_pass([res["after_step"] for res in ev.ranks], d.after_step, "after_step_", d.weights)
    return out
