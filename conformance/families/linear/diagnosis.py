"""Likely causes: symptoms of the classic tensor-parallel bugs, recognised in a failed example.

:func:`likely_cause` looks at one violation and the evidence around it and, when the symptom
matches a known bug class (the seeded-bug zoo in ``impls/zoo`` has one of each), names it in one
line. Each recogniser below checks one symptom exactly — a ratio, a permutation, a shape — using
the same rounding bounds as the verdict, so a cause is only offered when it explains the numbers.
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch
from tpconform.families.causes import ratio
from tpconform.families.linear.case import LAYOUTS
from tpconform.families.linear.dense import dense_linear
from tpconform.families.linear.tensors import rounded_to
from tpconform.families.linear.verdict import Evidence, Violation, after_update, updated
from tpconform.spec import tolerance as tol
from tpconform.spec.compare import compare

_GRAD_KEYS = {"weight grad": "weight_grad", "input grad": "input_grad", "bias grad": "bias_grad"}




def _within(actual, expected, bound) -> bool:
    return actual is not None and compare(actual, expected, bound, "") is None


# -- shards ------------------------------------------------------------------------------------------
def _shards_cause(ev: Evidence, v: Violation) -> str | None:
    t, case, d = ev.outcome.tensors, ev.case, ev.split_dim
    shards = [res.weight_shard for res in ev.ranks]
    if any(w is None or w.dim() != 2 for w in shards):
        return None
    full = list(t.weight.shape)
    if v.quantity == "bias shard" and case.kind == "column":
        bias_sizes = [0 if res.bias_shard is None else res.bias_shard.numel() for res in ev.ranks]
        weight_sizes = [w.shape[0] for w in shards]
        if sum(bias_sizes) == case.out_features and bias_sizes != weight_sizes:
            return (f"the bias is sharded with a different split than the weight (bias {bias_sizes}, weight "
                    f"{weight_sizes} rows): each rank's bias rows must be its weight rows")
        return None
    if v.quantity != "weight shard":
        return None
    if case.world_size > 1 and all(list(w.shape) == full for w in shards):
        return "every rank holds the whole weight: the layer is not tensor-parallel (it should hold a shard)"
    if any(w.shape[1 - d] != full[1 - d] for w in shards) and all(w.shape[d] == full[d] for w in shards):
        want, got = ("rows (out_features)", "columns") if d == 0 else ("columns (in_features)", "rows")
        return f"the weight is split along the wrong dim: a {case.kind} shard is a block of {want}, these are {got}"
    sizes = [w.shape[d] for w in shards]
    n = full[d]
    if sum(sizes) < n and all(s == n // case.world_size for s in sizes):
        return (f"every rank holds {n}//{case.world_size} = {n // case.world_size} of {n}: the remainder of a "
                "non-divisible dim is truncated")
    if sum(sizes) == n:
        pieces = torch.split(t.weight, sizes, dim=d)
        if sorted(map(_key, pieces)) == sorted(map(_key, shards)):
            return "the shards are the right blocks in a different rank order"
    return None  # no recogniser's precondition holds: no guess


def _key(t: torch.Tensor) -> bytes:
    return bytes(str(list(t.shape)), "ascii") + t.contiguous().view(torch.uint8).numpy().tobytes()


# -- forward -----------------------------------------------------------------------------------------
def _expected(ev: Evidence, r: int, output: torch.Tensor, dtype: torch.dtype):
    t = ev.outcome.tensors
    bound = tol.output_bound(t.x, t.weight, t.bias, dtype, ev.case.world_size)
    if ev.output_is_sharded:
        s = ev.rank_slice(r)
        return output[..., s], bound[..., s]
    return output, bound


def _shape_cause(ev: Evidence, r: int, out: torch.Tensor) -> str | None:
    case, ws = ev.case, ev.case.world_size
    want = [*case.batch_shape, ev.partition()[r] if ev.output_is_sharded else case.out_features]
    if list(out.shape) == want:
        if out.dtype != case.torch_dtype:
            return (f"the output is {str(out.dtype)[6:]} for a {case.dtype} input: the result is not cast back "
                    "to the input dtype")
        return None
    if (not ev.output_is_sharded and ws > 1 and out.shape[:-1] == tuple(case.batch_shape)
            and out.shape[-1] == ev.partition()[r]):
        return "the output has this rank's share of out_features: the local shard was returned without an all-gather"
    if out.dim() == len(want) and out.dim() >= 3 and ws > 1 and any(
            out.shape[i] == ws * want[i] != 0 for i in range(len(want) - 1)):
        return "the shards are stacked along a batch dim: the all-gather concatenates along the wrong dim (not the last)"
    if out.numel() == math.prod(want) and out.dim() < len(want):
        return (f"the output has the right number of elements in shape {list(out.shape)}: the batch dims were "
                "flattened and not all restored (an input with more than two dims)")
    return None


def _output_cause(ev: Evidence, r: int, out: torch.Tensor) -> str | None:
    case, ws, t = ev.case, ev.case.world_size, ev.outcome.tensors
    expected, bound = _expected(ev, r, ev.dense.output, case.torch_dtype)
    if out.shape != expected.shape or not out.numel():
        return None
    if not ev.output_is_sharded and case.kind == "column" and ws > 1:
        wrong_place = _columns_permuted(out.double(), expected, bound)
        if wrong_place:
            return ("the output's columns are the right values in the wrong places: the all-gather concatenates "
                    "the shards in the wrong rank order")
    tail = _first_of_wrong_tail(out.double(), expected, bound)
    if tail is not None:
        n = math.prod(case.batch_shape)
        return (f"batch rows 0-{tail - 1} are right and rows {tail}-{n - 1} all wrong: a tile or chunk loop "
                "drops the rows past its last whole tile")
    bias = 0 if t.bias is None else t.bias.double()
    if t.bias is not None and case.kind == "row" and ws > 1:
        k = ratio(out.double() - expected, t.bias.double().expand_as(expected))
        if k is not None and abs(k - (ws - 1)) < 0.25:
            return f"the output is off by {ws - 1}× the bias: the bias is added on every rank, before the all-reduce"
    if case.kind == "row" and ws > 1:
        s = ev.rank_slice(r)
        partial = t.x.double()[..., s] @ t.weight.double()[:, s].T + bias
        if _within(out, partial, bound):
            return "the output is this rank's partial product x_r·W_rᵀ (+ b): the all-reduce is missing"
    for low in (torch.bfloat16, torch.float16, torch.float32):
        if tol.unit_roundoff(low) > tol.unit_roundoff(case.torch_dtype):
            _, low_bound = _expected(ev, r, ev.dense.output, low)
            if _within(out, expected, low_bound):
                return (f"the output is within {str(low)[6:]}'s rounding but not {case.dtype}'s: the math is done at "
                        "lower precision than the input")
    if case.kind == "row" and ws > 1:
        k = ratio(out.double() - bias, expected - bias)
        if k is not None and abs(k - 1) > 0.05:
            return f"the output is ~{k:.2f}× the dense product: check the all-reduce"
    if case.noncontiguous:
        return (f"this case's input and upstream grad are laid out as {LAYOUTS[case.layout]}; if it passes with "
                "layout=contiguous, the layer reads non-contiguous inputs as if they were contiguous")
    return None


def _first_of_wrong_tail(out: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor) -> int | None:
    """The first batch row of a wrong tail — every row before it right, every row from it on wrong —
    when it starts at a multiple of 16 rows (a tile's size); ``None`` otherwise."""
    n = expected.shape[-1]
    wrong = ((out - expected).abs() > bound).reshape(-1, n).any(dim=1)
    if not n or not bool(wrong.any()):
        return None
    first = int(wrong.nonzero()[0])
    return first if first > 0 and first % 16 == 0 and bool(wrong[first:].all()) else None


def _columns_permuted(out: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor) -> bool:
    """Every output column equals some dense column, and at least one is not in its own place."""
    n = expected.shape[-1]
    o, e, b = out.reshape(-1, n), expected.reshape(-1, n), bound.reshape(-1, n)
    if o.shape[0] == 0:
        return False
    close = ((o[:, :, None] - e[:, None, :]).abs() <= b[:, None, :]).all(dim=0)  # [out col, dense col]
    return bool(close.any(dim=1).all()) and not bool(close.diagonal().all())


def _agree_cause(ev: Evidence, r: int) -> str | None:
    expected, bound = _expected(ev, r, ev.dense.output, ev.case.torch_dtype)
    if all(_within(res.output, expected, bound) for res in (ev.ranks[0], ev.ranks[r])):
        return ("both ranks are within rounding of the dense output but differ from each other: the ranks combine "
                "the partial results in different orders (a replicated result must be computed identically)")
    return None


def _second_call_cause(ev: Evidence, r: int) -> str | None:
    res = ev.ranks[r]
    first, again = res.output, res.second_output
    if first is not None and again is not None and first.shape == again.shape and first.numel() \
            and torch.equal(first, again):
        return "the second call returned the first call's output: the layer keeps state (a cache) across calls"
    return None


# -- gradients ---------------------------------------------------------------------------------------
def _grad_cause(ev: Evidence, v: Violation, r: int) -> str | None:
    case, ws, t = ev.case, ev.case.world_size, ev.outcome.tensors
    res = ev.ranks[r]
    actual = res.get(_GRAD_KEYS[v.quantity])
    if actual is None:
        if res.output is not None and res.input_grad is None and res.weight_grad is None:
            return (f"the {v.quantity} is missing and so is every other grad: the output carries no autograd graph "
                    "— a collective run outside autograd (e.g. a plain dist.all_gather) cuts it")
        return None
    s = ev.rank_slice(r)
    if v.quantity == "input grad":
        expected = ev.dense.input_grad[..., s] if ev.input_is_sliced else ev.dense.input_grad
    elif v.quantity == "weight grad":
        expected = ev.dense.weight_grad[s] if ev.split_dim == 0 else ev.dense.weight_grad[:, s]
    else:
        expected = ev.dense.bias_grad[s] if case.kind == "column" else ev.dense.bias_grad
    if actual.shape != expected.shape:
        return None
    k = ratio(actual, expected)
    if k is not None and ws > 1 and abs(k - ws) < 0.25:
        return f"the {v.quantity} is {ws}× too large: a backward sums across ranks where it should not"
    if k is not None and ws > 1 and abs(k * ws - 1) < 0.25:
        return f"the {v.quantity} is {ws}× too small: averaged over the ranks, or a backward all-reduce is missing"
    if v.quantity == "input grad" and ws > 1:
        bound = tol.input_grad_bound(t.grad_out, t.weight, case.torch_dtype, ws)
        if case.kind == "row" and not ev.input_is_sliced:
            inside = actual[..., s]
            outside = torch.cat([actual[..., :s.start], actual[..., s.stop:]], dim=-1)
            if _within(inside, expected[..., s], bound[..., s]) and not bool(outside.ne(0).any()):
                return ("the input grad is right on this rank's slice and zero elsewhere: the backward all-gather of "
                        "the input grad is missing")
        if case.kind == "column":
            g = t.grad_out.double()[..., s]
            partial = g @ t.weight.double()[s]
            if _within(actual, partial, bound):
                return ("the input grad is this rank's partial g_r·W_r: the backward all-reduce of the input grad is "
                        "missing")
    return None


# -- the usage protocols: micro-batches -----------------------------------------------------------------
def _micro_batch_cause(ev: Evidence, v: Violation, r: int) -> str | None:
    """What ``k`` micro-batches' accumulated weight grads say: micro-batch ``i`` (input ``2^i x``,
    upstream grad ``2^i g``) contributes ``4^i`` times the first one's weight grad ``G``, so each sum is a
    multiple of ``G``, and which multiple names the bug."""
    res, k = ev.ranks[r], ev.case.micro_batches
    if not v.quantity.startswith("weight grad"):
        return None
    one = ev.dense.weight_grad[ev.case.sharding.weight_index(ev.rank_slice(r))]
    reverse, in_order = ratio(res.usage_weight_grad, one), ratio(res.usage_in_order_weight_grad, one)
    near = lambda c, target: c is not None and abs(c - target) <= 1e-2 * target  # noqa: E731
    if near(reverse, 1) and near(in_order, 4 ** (k - 1)):
        return (f"each accumulated weight grad is its last backward's alone (1x and {4 ** (k - 1)}x the first "
                f"micro-batch's, where the {k} backwards sum to {(4 ** k - 1) // 3}x): the layer assigns weight.grad "
                "instead of accumulating into it")
    c = reverse if "every backward" in v.quantity else in_order
    single = ratio(res.weight_grad, one)  # the example's own backward, where this run read it
    if c is not None and not near(c, (4 ** k - 1) // 3) and (res.weight_grad is None or near(single, 1)):
        order = "in the reverse order" if "every backward" in v.quantity else "in the forwards' order"
        return (f"with the backwards {order}, the weight grad is {c:g}x the first micro-batch's where the {k} "
                f"backwards sum to {(4 ** k - 1) // 3}x: a backward used another micro-batch's input — the layer "
                "keeps its input on the module (one slot, a stack, a ring of slots) instead of in the autograd context "
                "(ctx.save_for_backward)")
    return None


# -- communication -----------------------------------------------------------------------------------
def _communication_cause(ev: Evidence, r: int) -> str | None:
    res = ev.ranks[r]
    if ev.case.world_size > 1 and not res.collective_elements:
        if ev.output_is_sharded:  # its forward needs nothing from the other ranks; its input grad does
            return ("it sent nothing: a column layer with a sharded output needs no forward collective, but its "
                    "input grad is the sum of every rank's partial g_r·W_r: the backward all-reduce is missing")
        out = res.output
        expected, bound = _expected(ev, r, ev.dense.output, ev.case.torch_dtype)
        if isinstance(out, torch.Tensor) and out.shape == expected.shape and _within(out, expected, bound):
            return ("it sent nothing, yet its output is the dense one: it computes the other ranks' part from weights "
                    "it should not hold (a hidden copy of the master weight), not tensor-parallel")
        return None
    shard = res.weight_shard
    sent = res.collective_elements or 0
    if shard is not None and shard.numel() and sent >= shard.numel():
        return ("it sent at least a weight shard's worth of elements: it likely gathers the weight and computes "
                "the layer locally (not tensor-parallel)")
    return None


# -- a training step ---------------------------------------------------------------------------------
def _train_cause(ev: Evidence, v: Violation, r: int) -> str | None:
    """Which part of the update did not reach what the layer computes."""
    t, res, case = ev.outcome.tensors, ev.ranks[r], ev.case
    after, u = after_update(ev), t.update
    if u is None:
        return None
    s = ev.rank_slice(r)
    rows = (s, slice(None)) if ev.split_dim == 0 else (slice(None), s)
    if v.quantity == "training step":
        if "can't optimize a non-leaf Tensor" in v.message:
            return ("the optimizer was given a non-leaf tensor: impl.shards returns a view or a copy of the parameter "
                    "(an adapter then names the real parameters in impl.parameters)")
        if "backward through the graph a second time" in v.message:
            return ("the second backward reaches a graph the first one freed: the layer reuses a tensor from an "
                    "earlier call (a cached output or weight computed with autograd)")
        if "placement" in v.message:
            return "optimizer.step() cannot apply the grads: they are placed unlike their parameters"
        return None
    if v.quantity == "updated weight shard":
        shard, bound = res.updated_weight_shard, after.weight_error[rows]
        if _within(shard, t.weight.double()[rows], bound):
            return ("the shard is unchanged: neither optimizer.step() nor the in-place add reached it — impl.shards "
                    "returns a copy, not the parameter the layer holds")
        if _within(shard, (t.weight.double() + u.delta_weight.double())[rows], bound):
            return ("the shard got the delta but not the SGD step: its grad is not on the parameter the optimizer "
                    "steps (p.grad is None or elsewhere), so optimizer.step() skips it")
        return None
    if v.quantity != "output after the step" or res.step_output is None:
        return None
    out = res.step_output
    out_rows = s if ev.output_is_sharded else slice(None)
    expected, bound = after.output[..., out_rows], after.output_bound[..., out_rows]
    if out.shape != expected.shape or not out.numel():
        return None
    # the weight as it was at construction, with the bias as it was or as updated (a bias kept live)
    stales = [dense_linear(dataclasses.replace(t, x=u.x, grad_out=u.grad_out, update=None, bias=bias)).output
              for bias in ([t.bias] if after.bias is None else [t.bias, after.bias])]
    stale = next((st[..., out_rows] for st in stales if _within(out, st[..., out_rows], bound)),
                 stales[0][..., out_rows])
    if case.kind == "column" and not ev.output_is_sharded and case.world_size > 1 and ev.partition()[r] < case.out_features:
        own = torch.zeros(case.out_features, dtype=torch.bool)
        own[s] = True
        if _within(out[..., own], expected[..., own], bound[..., own]) and \
                _within(out[..., ~own], stale[..., ~own], bound[..., ~own]):
            return ("this rank's own output columns follow the update, the other ranks' columns are those of the "
                    "weight at construction: it computes them from a hidden copy of the master weight instead of "
                    "all-gathering them")
    if _within(out, stale, bound):
        return ("the output is the one of the weight as it was at construction: the layer computes from a copy made "
                "then (cached or pre-transposed), and updates of its shards never reach its forward")
    return None


# -- mixed precision ----------------------------------------------------------------------------------
def _mixed_cause(ev: Evidence, v: Violation, r: int) -> str | None:
    """The output after the optimizer step, under autocast, is the one of the weight before the step."""
    res, mixed = ev.ranks[r], ev.outcome.mixed_precision
    out = res.mixed_step_output
    if v.quantity != "output after the step under autocast" or out is None or mixed is None:
        return None
    param, compute = (getattr(torch, d) for d in mixed)
    t = rounded_to(ev.outcome.tensors, compute)
    u = t.update
    if u is None:
        return None
    dense = dense_linear(dataclasses.replace(t, update=None))
    after = updated(t, dense, ev.case.world_size, param, compute)
    cols = ev.rank_slice(r) if ev.output_is_sharded else slice(None)
    bound = after.output_bound[..., cols]
    if out.shape != bound.shape or not out.numel():
        return None
    for bias in ([t.bias] if after.bias is None else [t.bias, after.bias]):  # the bias cast once, or at each call
        stale = dense_linear(dataclasses.replace(t, x=u.x, grad_out=u.grad_out, update=None, bias=bias)).output
        if _within(out, stale[..., cols], bound):
            return ("the output after the optimizer step is the one of the weight before it: the layer computes from "
                    f"a {mixed[1]} copy of its {mixed[0]} weight cast once and never refreshed after the update")
    return None


# -- the layer as built -------------------------------------------------------------------------------
def _as_built_cause(ev: Evidence) -> str | None:
    """A bias as built that is not zero, within ``nn.Linear``'s init range (uniform in ±1/√in_features)
    on every rank holding one: it was initialised the way ``nn.Linear`` initialises its bias."""
    held = [res.built_bias_shard for res in ev.ranks if res.built_bias_shard is not None]
    held = [b.double() for b in held if b.numel()]
    limit = 1 / math.sqrt(max(ev.case.in_features, 1))
    if not held or not all(bool(b.ne(0).any()) and float(b.abs().max()) <= limit for b in held):
        return None
    differ = not ev.case.sharding.bias_sharded and any(b.shape != held[0].shape or not torch.equal(b, held[0])
                                                       for b in held[1:])
    return (f"the bias is initialised like nn.Linear's (uniform in ±1/√in_features = ±{limit:.3g})"
            + (", from a different random stream on each rank" if differ else "")
            + ": a layer built from given weights starts with the convention's bias")


# -- crashes and hangs -------------------------------------------------------------------------------
def _crash_cause(ev: Evidence, v: Violation) -> str | None:
    case = ev.case
    split = case.out_features if case.kind == "column" else case.in_features
    empty = split < case.world_size
    if "view size is not compatible with input tensor's size and stride" in v.message:
        return (f"the layer calls .view() on a tensor whose layout does not allow that view (this case's input is "
                f"laid out as {LAYOUTS[case.layout]}): .reshape() copies when it must")
    if "timed out" in v.message or "did not reply within the grace period" in v.message:
        return ("some rank never joined a collective the others wait in: a rank skips or reorders a collective"
                + (" (here a rank has an empty shard: does it return early?)" if empty else ""))
    if v.quantity == "construction" and "some ranks only" in v.message and empty:
        return "construction raised only on some ranks, and some rank's shard is empty: empty shards are not handled"
    if "ProcessGroupGloo::allgather: invalid tensor size" in v.message:
        return ("Gloo's all_gather needs every rank's tensor the same size (NCCL accepts uneven ones): pad each "
                "shard to the largest and trim after the gather, or check an NCCL-only layer with --backend nccl")
    if v.quantity == "run" and math.prod(case.batch_shape) == 0 and _ZERO_SIZE.search(_raised_lines(v.message)):
        return "the batch is empty: the layer does not handle inputs with a zero-size batch dim"
    return None


# what an error says when a zero size is its trouble (the empty-batch cause needs it: a layer that raises on
# every batch also raises on an empty one)
_ZERO_SIZE = re.compile(r"\b0 elements|\bsize 0\b|zero[- ]size|numel\(\) ?== ?0|ZeroDivisionError|division by zero"
                        r"|\bempty\b", re.IGNORECASE)


def _raised_lines(message: str) -> str:
    """The ``... raised: Type: message`` lines of a crash, without the source lines of its traceback."""
    return "\n".join(line for line in message.splitlines() if "raised:" in line)


def likely_cause(ev: Evidence, v: Violation) -> str | None:
    """One line naming the bug class that explains violation ``v``, or ``None``."""
    r = v.rank if v.rank is not None and v.rank < len(ev.ranks) else None
    if v.quantity in ("run", "construction"):
        return _crash_cause(ev, v)
    if v.quantity in ("weight shard", "bias shard"):
        return _shards_cause(ev, v)
    if r is None:
        return None
    res = ev.ranks[r]
    if v.property == "repeated_calls_are_independent":
        return _second_call_cause(ev, r)
    if v.property in ("communicates_activations_not_weights", "communicates_what_the_other_ranks_need"):
        return _communication_cause(ev, r)
    if v.property == "training_step_matches_the_dense_layer":
        return _train_cause(ev, v, r)
    if v.property == "the_layer_as_built_follows_the_convention":
        return _as_built_cause(ev)
    if v.property == "a_mixed_precision_step_matches_the_dense_layer":
        return _mixed_cause(ev, v, r)
    if v.property == "ranks_agree_on_the_output":
        return _agree_cause(ev, r)
    if v.property == "micro_batches_accumulate_like_the_dense_layer":
        return _micro_batch_cause(ev, v, r)
    if v.quantity == "output" and res.output is not None:
        out = res.output
        return _shape_cause(ev, r, out) or _output_cause(ev, r, out)
    if v.quantity in _GRAD_KEYS:
        return _grad_cause(ev, v, r)
    return None
