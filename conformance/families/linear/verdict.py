"""The spec: what a tensor-parallel linear layer must do, one property per function.

Every property reads one example's :class:`Evidence` — the case, what every rank returned, and the
float64 dense ground truth — and returns the list of ways the example violates it (empty: holds).

A dense layer computes ``y = x Wᵀ + b``. A tensor-parallel layer on ``world_size`` ranks must:

1. **shards**: hold a shard of ``W`` on each rank — column: rows, row: columns — such that the
   shards, in rank order, rebuild ``W`` exactly; a column layer's bias is sharded with its rows,
   a row layer's bias is held whole;
2. **output**: return on every rank what the dense layer returns (the rank's slice of it when a
   column layer leaves its output sharded), within the rounding-error bound;
3. **ranks agree**: return bit-identical replicated outputs on every rank;
4. **shape and dtype**: return the shape and dtype ``nn.Linear`` returns;
5. **input grad**: give the input the dense input grad (its slice, for a sliced row input);
6. **weight grad**: give each weight shard the matching slice of the dense weight grad;
7. **bias grad**: give each bias (shard) the matching slice of the dense bias grad;
8. **inputs untouched**: modify neither its input nor the upstream gradient.
9. **repeated calls**: return, on a second call with another input, the output for that input;
10. **communication**: send activations through collectives, never the weight, and at least what the
    other ranks need of this rank's part (a rank holding only its shard cannot do without it);
11. **training step**: after ``torch.optim.SGD`` steps every rank's shards with the grads just
    computed and a delta is added to them in place, compute what the dense layer with the same
    update applied to the full weight computes (output and grads, on a new input).
12. **as training loops use it** (each on a fresh layer): two forwards before their backwards give
    each input its own output and grad and accumulate the parameter grads (micro-batches); an input
    that does not require grad still trains the layer; a call under ``torch.inference_mode()`` leaves
    the training call after it unchanged.
13. **as built**: before the suite writes into it, the layer's bias is the convention's (the given
    bias's slice; zero in the simple-module convention), and a replicated bias is the same on every rank;
14. **state_dict**: the trained layer's ``state_dict()``, loaded into a freshly built layer, gives that
    layer the trained shards, outputs and grads;
15. **converted**: a layer built in another dtype and converted (``.double()``, ``.half()``,
    ``.to(dtype)``) computes what the dense layer computes in the dtype it was converted to.
16. **mixed precision**: with float32 parameters, called under ``torch.autocast`` on a 16-bit input,
    trained one step (SGD on the float32 parameters) and called again, computes what the dense layer
    computes, within the 16-bit compute dtype's bound.

Non-divisible dims: raising at construction on every rank conforms when the impl declares
``uneven_shards=False``; a wrong result never does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from tpconform.families.linear.case import STAGES, LayerCase
from tpconform.families.linear.dense import DenseResult, dense_linear
from tpconform.families.linear.results import RankResult
from tpconform.families.linear.run import Outcome
from tpconform.families.linear.tensors import TRAIN_LR, rounded_to
from tpconform.spec import tolerance as tol
from tpconform.spec.compare import compare
from tpconform.spec.partition import partition
from tpconform.spec.violations import Violation, construction_raised


@dataclass
class Evidence:
    case: LayerCase
    outcome: Outcome
    dense: DenseResult
    uneven_shards_supported: bool = True
    convention: str = ""  # the impl's declared convention ("simple-module"; "": this protocol's builders)
    _partition: Optional[list[int]] = field(default=None, repr=False)

    @property
    def ranks(self) -> list[RankResult]:
        return self.outcome.ranks

    @property
    def split_dim(self) -> int:
        """The weight dim that is sharded: rows for a column layer, columns for a row layer."""
        return self.case.sharding.weight_dim

    def partition(self) -> list[int]:
        """Each rank's shard size along the split dim, read from its weight shape.

        Falls back to ``torch.tensor_split``'s sizes when the shapes do not form a partition (the
        shards property then reports why)."""
        if self._partition is None:
            full = self.case.sharding.split_features(self.case)
            sizes = []
            for r in self.ranks:
                w = r.weight_shard
                sizes.append(int(w.shape[self.split_dim]) if w is not None and w.dim() == 2 else -1)
            self._partition = partition(sizes, full, self.case.world_size)
        return self._partition

    def rank_slice(self, rank: int) -> slice:
        sizes = self.partition()
        start = sum(sizes[:rank])
        return slice(start, start + sizes[rank])

    @property
    def output_is_sharded(self) -> bool:
        return self.case.sharding.output_is_sharded(self.case)

    @property
    def input_is_sliced(self) -> bool:
        return self.case.sharding.input_is_sliced(self.case)


Property = Callable[[Evidence], list[Violation]]
SPEC: dict[str, Property] = {}
NEEDS: dict[str, tuple[str, ...]] = {}  # property -> the worker stages (cases.STAGES) its evidence needs
SELF_REPORTED: set[str] = set()  # properties whose evidence the candidate's own process measures (no points)


def spec_property(*needs: str, self_reported: bool = False) -> Callable[[Property], Property]:
    """Register the decorated property in :data:`SPEC` under its name; ``needs`` are the worker
    stages (:data:`tpconform.families.linear.case.STAGES`) whose results it reads, beyond the layer's shards;
    ``self_reported``: its evidence is measured inside the candidate's process (see ``spec.family.Property``)."""
    unknown = set(needs) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {STAGES}")

    def register(fn: Property) -> Property:
        SPEC[fn.__name__] = fn
        NEEDS[fn.__name__] = tuple(needs)
        if self_reported:
            SELF_REPORTED.add(fn.__name__)
        return fn

    return register


def stages_for(props) -> tuple[str, ...]:
    """The worker stages (in :data:`~tpconform.families.linear.case.STAGES` order) that ``props`` read."""
    wanted = {stage for prop in props for stage in NEEDS[prop]}
    return tuple(stage for stage in STAGES if stage in wanted)


def _tensors(ev: Evidence):
    return ev.outcome.tensors


# -- 1. shards ---------------------------------------------------------------------------------
@spec_property()
def shards_rebuild_the_dense_weight(ev: Evidence) -> list[Violation]:
    name, case, t = "shards_rebuild_the_dense_weight", ev.case, _tensors(ev)
    out: list[Violation] = []
    d = ev.split_dim
    other = 1 - d
    for r, res in enumerate(ev.ranks):
        w = res.weight_shard
        if w is None or w.dim() != 2 or w.shape[other] != t.weight.shape[other]:
            shape = None if w is None else list(w.shape)
            want = "[rows, in_features]" if d == 0 else "[out_features, cols]"
            out.append(Violation(name, f"rank {r}'s weight shard has shape {shape}; a {case.kind} shard is "
                                       f"{want} = [.., {t.weight.shape[other]}] in nn.Linear orientation",
                                 r, "weight shard"))
        elif w.dtype != t.weight.dtype:
            out.append(Violation(name, f"rank {r}'s weight shard is {w.dtype}, expected {t.weight.dtype}", r,
                                 "weight shard"))
    if out:
        return out
    shards = [res.weight_shard for res in ev.ranks]
    rebuilt = torch.cat(shards, dim=d)
    sizes = [s.shape[d] for s in shards]
    if rebuilt.shape != t.weight.shape or not torch.equal(rebuilt, t.weight):
        where = "rows" if d == 0 else "columns"
        out.append(Violation(name, f"the weight shards (sizes {sizes} along {where}), concatenated in rank "
                                   f"order, do not rebuild the dense weight {list(t.weight.shape)}"
                                   + _first_wrong_rank(shards, t.weight, d), None, "weight shard"))
        return out
    for r, res in enumerate(ev.ranks):
        b = res.bias_shard
        if t.bias is None:
            if b is not None and bool(b.ne(0).any()):
                out.append(Violation(name, f"rank {r} holds a non-zero bias although bias=False", r, "bias shard"))
            continue
        expected = t.bias[case.sharding.bias_index(ev.rank_slice(r))]
        if not case.sharding.bias_sharded and b is None:
            continue  # a row bias may live on some ranks only; it must still be added once
        if b is None or b.shape != expected.shape or not torch.equal(b, expected):
            what = "the bias rows matching its weight rows" if case.sharding.bias_sharded else "the whole bias"
            got = None if b is None else list(b.shape)
            out.append(Violation(name, f"rank {r}'s bias (shape {got}) is not {what} "
                                       f"(shape {list(expected.shape)})", r, "bias shard"))
    if t.bias is not None and not case.sharding.bias_sharded and all(res.bias_shard is None
                                                                     for res in ev.ranks):
        out.append(Violation(name, "no rank holds the bias", None, "bias shard"))
    return out


def _first_wrong_rank(shards, weight, d) -> str:
    start = 0
    for r, s in enumerate(shards):
        n = s.shape[d]
        if start + n > weight.shape[d] or not torch.equal(s, weight.narrow(d, start, n)):
            return f"; rank {r}'s shard is not the dense weight's slice {start}:{start + n}"
        start += n
    return ""


# -- 2-4. forward --------------------------------------------------------------------------------
def _expected_output(ev: Evidence, r: int):
    t = _tensors(ev)
    y, b = ev.dense.output, tol.output_bound(t.x, t.weight, t.bias, ev.case.torch_dtype, ev.case.world_size)
    if ev.output_is_sharded:
        s = ev.rank_slice(r)
        return y[..., s], b[..., s]
    return y, b


@spec_property("forward")
def output_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    name = "output_matches_the_dense_layer"
    out = []
    for r, res in enumerate(ev.ranks):
        expected, bound = _expected_output(ev, r)
        m = compare(res.output, expected, bound, f"rank {r} output")
        if m:
            out.append(Violation(name, str(m), r, "output", m))
    return out


@spec_property("forward")
def ranks_agree_on_the_output(ev: Evidence) -> list[Violation]:
    name = "ranks_agree_on_the_output"
    if ev.output_is_sharded:
        return []
    first = ev.ranks[0].output
    out = []
    for r, res in enumerate(ev.ranks[1:], start=1):
        o = res.output
        if first is None or o is None or o.shape != first.shape or not torch.equal(o, first):
            diff = ""
            if first is not None and o is not None and o.shape == first.shape:
                diff = f" (max difference {float((o.double() - first.double()).abs().max()):.3g})"
            out.append(Violation(name, f"rank {r}'s output differs from rank 0's{diff}; a replicated output "
                                       "must be bit-identical on every rank", r, "output"))
    return out


@spec_property("forward")
def output_shape_and_dtype_match_nn_linear(ev: Evidence) -> list[Violation]:
    name = "output_shape_and_dtype_match_nn_linear"
    case = ev.case
    out = []
    for r, res in enumerate(ev.ranks):
        o = res.output
        width = ev.partition()[r] if ev.output_is_sharded else case.out_features
        shape = [*case.batch_shape, width]
        if o is None:
            out.append(Violation(name, f"rank {r} returned no output", r, "output"))
            continue
        if list(o.shape) != shape:
            out.append(Violation(name, f"rank {r}'s output has shape {list(o.shape)}, nn.Linear gives {shape}"
                                 + (" (this rank's slice)" if ev.output_is_sharded else ""), r, "output"))
        if o.dtype != case.torch_dtype:
            out.append(Violation(name, f"rank {r}'s output is {o.dtype}, the input was {case.torch_dtype}",
                                 r, "output"))
    return out


# -- 5-7. gradients -------------------------------------------------------------------------------
@spec_property("forward", "backward")
def input_grad_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    name = "input_grad_matches_the_dense_layer"
    t, case = _tensors(ev), ev.case
    bound = tol.input_grad_bound(t.grad_out, t.weight, case.torch_dtype, case.world_size)
    out = []
    for r, res in enumerate(ev.ranks):
        expected, b = ev.dense.input_grad, bound
        if ev.input_is_sliced:
            s = ev.rank_slice(r)
            expected, b = expected[..., s], b[..., s]
        m = compare(res.input_grad, expected, b, f"rank {r} input grad")
        if m:
            out.append(Violation(name, str(m), r, "input grad", m))
    return out


@spec_property("forward", "backward")
def weight_grad_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    name = "weight_grad_matches_the_dense_layer"
    t, case = _tensors(ev), ev.case
    bound = tol.weight_grad_bound(t.grad_out, t.x, case.torch_dtype, case.world_size)
    out = []
    for r, res in enumerate(ev.ranks):
        index = ev.case.sharding.weight_index(ev.rank_slice(r))
        expected, b = ev.dense.weight_grad[index], bound[index]
        m = compare(res.weight_grad, expected, b, f"rank {r} weight grad")
        if m:
            out.append(Violation(name, str(m), r, "weight grad", m))
    return out


@spec_property("forward", "backward")
def bias_grad_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    name = "bias_grad_matches_the_dense_layer"
    t, case = _tensors(ev), ev.case
    if t.bias is None:
        return []
    bound = tol.bias_grad_bound(t.grad_out, case.torch_dtype, case.world_size)
    out = []
    for r, res in enumerate(ev.ranks):
        if not case.sharding.bias_sharded and res.bias_shard is None:
            continue
        s = case.sharding.bias_index(ev.rank_slice(r))
        expected, b = ev.dense.bias_grad[s], bound[s]
        m = compare(res.bias_grad, expected, b, f"rank {r} bias grad")
        if m:
            out.append(Violation(name, str(m), r, "bias grad", m))
    return out


# -- 8. no side effects ----------------------------------------------------------------------------
@spec_property("forward", "backward", self_reported=True)  # in-place flags the worker measures
def inputs_are_left_untouched(ev: Evidence) -> list[Violation]:
    name = "inputs_are_left_untouched"
    out = []
    for r, res in enumerate(ev.ranks):
        if res.input_modified:
            out.append(Violation(name, f"rank {r} modified its input in place", r, "input"))
        if res.grad_modified:
            out.append(Violation(name, f"rank {r} modified the upstream gradient in place", r, "upstream grad"))
    return out


# -- 9. repeated calls ------------------------------------------------------------------------------
@spec_property("forward", "backward", "second_call")
def repeated_calls_are_independent(ev: Evidence) -> list[Violation]:
    """A second forward call, on the negated input, returns the dense output for *that* input:
    nothing (a cached output, a reused buffer) carries over from the first call."""
    name = "repeated_calls_are_independent"
    t = _tensors(ev)
    again = dense_linear(dataclasses.replace(t, x=-t.x)).output
    out = []
    for r, res in enumerate(ev.ranks):
        _, bound = _expected_output(ev, r)  # the bound depends on |x| only
        expected = again[..., ev.rank_slice(r)] if ev.output_is_sharded else again
        m = compare(res.second_output, expected, bound, f"rank {r} output of a second call (input negated)")
        if m:
            out.append(Violation(name, str(m), r, "second output", m))
    return out


# -- 10. communication -------------------------------------------------------------------------------
def activation_elements(case: LayerCase) -> int:
    """Elements of the input, the output and their grads: 2·B·(in_features + out_features)."""
    return 2 * math.prod(case.batch_shape) * (case.in_features + case.out_features)


@spec_property("forward", "backward", "collective_volume", self_reported=True)  # counted in the worker
def communicates_activations_not_weights(ev: Evidence) -> list[Violation]:
    """Tensor parallelism moves activations, never the weight: per rank, the floating-point elements
    sent into collectives during forward and backward are at most :func:`activation_elements`.
    A layer that all-gathers its weight and computes locally sends a weight shard (rows × in_features)
    instead: more, as soon as the batch is small against the weight (an empty batch: any weight)."""
    name = "communicates_activations_not_weights"
    limit = activation_elements(ev.case)
    out = []
    for r, res in enumerate(ev.ranks):
        sent = res.collective_elements
        if sent is not None and sent > limit:
            calls = ", ".join(res.collectives or [])
            out.append(Violation(name, f"rank {r} sent {sent} elements into collectives ({calls}); the input, "
                                       f"output and their grads hold only {limit}", r, "communication"))
    return out


def least_exchange(case: LayerCase, shard: int) -> int:
    """The fewest floating-point elements a rank whose shard has ``shard`` rows (column) / columns
    (row) of ``W`` must send, in forward and backward, at world size >= 2: what the other ranks need
    of its part of the computation and cannot compute from what they hold.

    With ``B`` batch rows, the other ranks need (degrees of freedom of the smallest thing they can
    compute it from; ``k`` is the rank of the matrix they need):

    - column, gathered output: ``x·W_rᵀ`` (``B × shard``), with ``x`` known to them: ``W_r`` on the row
      space of ``x``, ``shard·min(B, in)``;
    - column, sharded output: ``g_r·W_r`` for the input grad (``B × in``, rank ``k = min(B, shard, in)``),
      knowing neither factor: ``k·(B + in − k)``;
    - row, full input: the partial output ``x_r·W_rᵀ`` (``B × out``), with ``x_r`` known to them:
      ``out·min(B, shard)``;
    - row, sliced input: the same partial, knowing neither factor (``k = min(B, shard, out)``):
      ``k·(B + out − k)``.

    Each is at most what the reference sends (its all-gather or all-reduce of ``B × shard``,
    ``B × in`` or ``B × out``), so a correct layer always meets it; a layer that sends nothing while a
    rank holds a non-empty shard and the batch is not empty computes from weights it should not hold."""
    ws = case.tp_size or case.world_size
    b = math.prod(case.batch_shape)
    if ws < 2 or not b or not shard:
        return 0
    other = case.in_features if case.sharding.weight_dim == 0 else case.out_features  # the dim not split
    if case.sharding.sliced_tensor(case):  # knowing neither factor
        k = min(b, shard, other)
        return k * (b + other - k)
    return shard * min(b, other) if case.sharding.weight_dim == 0 else other * min(b, shard)


@spec_property("forward", "backward", "collective_volume", self_reported=True)  # counted in the worker
def communicates_what_the_other_ranks_need(ev: Evidence) -> list[Violation]:
    """Tensor parallelism must communicate: at world size >= 2 a rank holding only its shard cannot
    produce the dense result without the other ranks' contributions, so per rank the floating-point
    elements sent into collectives (forward and backward) are at least :func:`least_exchange` — the
    lower bound beside :func:`communicates_activations_not_weights`' upper bound. A layer that keeps a
    hidden copy of the whole weight and computes the others' part itself sends less (nothing)."""
    name = "communicates_what_the_other_ranks_need"
    out = []
    for r, res in enumerate(ev.ranks):
        sent = res.collective_elements
        least = least_exchange(ev.case, ev.partition()[r])
        if sent is not None and sent < least:
            calls = ", ".join(res.collectives or []) or "no collective"
            out.append(Violation(name, f"rank {r} sent {sent} elements into collectives ({calls}); the other ranks "
                                       f"need at least {least} of its part of the layer, which only it holds", r,
                                 "communication"))
    return out


# -- 11. a training step -----------------------------------------------------------------------------
@dataclass
class AfterUpdate:
    """The dense layer after the training step (float64), and how far a correct layer may be from it.

    The update is computed from the verdict's own dense grads, never from the grads the ranks
    reported: a wrong grad must not move the expectation with it. ``weight_error`` / ``bias_error``
    bound a correct layer's updated parameters (``tolerance.update_error``: its grads are within the
    grad bounds, and the step rounds in the layer's dtype)."""

    weight: torch.Tensor  # w − lr·g + Δ  [out, in]
    bias: Optional[torch.Tensor]
    weight_error: torch.Tensor
    bias_error: Optional[torch.Tensor]
    output: torch.Tensor  # the dense layer's output / grads on the update's input and upstream grad
    output_bound: torch.Tensor
    input_grad: torch.Tensor
    input_grad_bound: torch.Tensor
    weight_grad: torch.Tensor
    weight_grad_bound: torch.Tensor
    bias_grad: Optional[torch.Tensor]
    bias_grad_bound: Optional[torch.Tensor]


def after_update(ev: Evidence) -> AfterUpdate:
    return updated(_tensors(ev), ev.dense, ev.case.world_size, ev.case.torch_dtype)


def updated(t, d: DenseResult, ws: int, dt: torch.dtype, compute: Optional[torch.dtype] = None) -> AfterUpdate:
    """The dense layer after the training step on ``t`` (whose dense results before it are ``d``), for a layer
    on ``ws`` ranks whose parameters are ``dt``; ``compute``: the dtype it computes in when that is not
    ``dt`` (mixed precision: its grads are ``compute``'s, the step rounds in ``dt``, and autocast casts the
    updated parameters, now off ``compute``'s grid, to ``compute`` in the forward: ``tolerance.cast_error``)."""
    u = t.update
    if u is None:
        raise ValueError("the example ran without the training step's tensors")
    lr = TRAIN_LR
    cd = compute or dt
    w_err = tol.update_error(t.weight, lr, d.weight_grad, tol.weight_grad_bound(t.grad_out, t.x, cd, ws),
                             u.delta_weight, dt)
    weight = t.weight.double() - lr * d.weight_grad + u.delta_weight.double()
    bias = b_err = None
    if t.bias is not None and d.bias_grad is not None and u.delta_bias is not None:
        b_err = tol.update_error(t.bias, lr, d.bias_grad, tol.bias_grad_bound(t.grad_out, cd, ws), u.delta_bias, dt)
        bias = t.bias.double() - lr * d.bias_grad + u.delta_bias.double()
    after = dense_linear(dataclasses.replace(t, weight=weight, bias=bias, x=u.x, grad_out=u.grad_out, update=None))
    # a correct layer computes with parameters within the errors of these: bound its rounding by their
    # magnitude, and add what the parameters' own errors do to the result
    x, g = u.x.double(), u.grad_out.double()
    w_abs, b_abs = weight.abs() + w_err, None if bias is None else bias.abs() + b_err
    out_bound = tol.output_bound(x, w_abs, b_abs, cd, ws)
    out_bound = out_bound + x.abs() @ w_err.T + (0 if b_err is None else b_err)
    in_bound = tol.input_grad_bound(g, w_abs, cd, ws) + g.abs() @ w_err
    if cd != dt:  # the forward's cast of each parameter to the compute dtype: one more rounding of one factor
        out_bound = out_bound + tol.cast_error(x.abs() @ w_abs.T + (0 if b_abs is None else b_abs),
                                               x.abs().sum(-1, keepdim=True) + (0 if bias is None else 1), cd)
        in_bound = in_bound + tol.cast_error(g.abs() @ w_abs, g.abs().sum(-1, keepdim=True), cd)
    return AfterUpdate(
        weight=weight, bias=bias, weight_error=w_err, bias_error=b_err,
        output=after.output, output_bound=out_bound, input_grad=after.input_grad, input_grad_bound=in_bound,
        weight_grad=after.weight_grad, weight_grad_bound=tol.weight_grad_bound(u.grad_out, u.x, cd, ws),
        bias_grad=after.bias_grad,
        bias_grad_bound=None if bias is None else tol.bias_grad_bound(u.grad_out, cd, ws),
    )


@spec_property("forward", "backward", "train_step")
def training_step_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    """After a training step on the shards — ``torch.optim.SGD`` over the parameters ``impl.shards``
    returns, with the grads just computed, then a random delta added to them in place — the shards
    hold the dense update's slices, and the layer computes, on a new input and upstream grad, the
    output and grads of the dense layer with the same update applied to the full weight. Catches a
    weight cached (pre-transposed) at construction, a hidden full copy of the weight, and grads placed
    on another tensor than the parameter the optimizer steps."""
    name = "training_step_matches_the_dense_layer"
    after = after_update(ev)
    out: list[Violation] = []
    failed = [r for r, res in enumerate(ev.ranks) if res.train_step_error]
    if failed:
        errors = "; ".join(f"rank {r}: {ev.ranks[r].train_step_error.splitlines()[0]}" for r in failed)
        return [Violation(name, f"the training step raised on rank(s) {failed}: {errors}", failed[0], "training step")]

    def check(quantity: str, key: str, r: int, expected, bound, what: str) -> None:
        m = compare(ev.ranks[r].get(key), expected, bound, f"rank {r} {what}")
        if m:
            out.append(Violation(name, str(m), r, quantity, m))

    _check_after_update(ev, after, check, STEP_KEYS)
    return out


# what each rank reports of the layer after the update — the training step's own layer; a fresh one that
# loaded its state_dict — as (quantity, result field, what): its shards, then its output and grads on
# the update's input and upstream grad
STEP_KEYS = (("updated weight shard", "updated_weight_shard", "weight shard after the step"),
             ("updated bias shard", "updated_bias_shard", "bias after the step"),
             ("output after the step", "step_output", "output after the step"),
             ("input grad after the step", "step_input_grad", "input grad after the step"),
             ("weight grad after the step", "step_weight_grad", "weight grad after the step"),
             ("bias grad after the step", "step_bias_grad", "bias grad after the step"))
RELOADED_KEYS = tuple((f"{q} of the reloaded layer", f"reloaded_{k}", f"{q} of the reloaded layer")
                      for q, k in (("weight shard", "weight_shard"), ("bias", "bias_shard"), ("output", "output"),
                                   ("input grad", "input_grad"), ("weight grad", "weight_grad"),
                                   ("bias grad", "bias_grad")))


def _check_after_update(ev: Evidence, after: AfterUpdate, check, keys) -> None:
    """``check(quantity, key, r, expected, bound, what)`` each rank's shards, output and grads (``keys``,
    in :data:`STEP_KEYS` order) against the dense layer after the update."""
    case = ev.case
    weight, bias, output, input_grad, weight_grad, bias_grad = keys
    for r, res in enumerate(ev.ranks):
        s = ev.rank_slice(r)
        rows = case.sharding.weight_index(s)
        with_bias = res.bias_shard is not None
        check(weight[0], weight[1], r, after.weight[rows], after.weight_error[rows], weight[2])
        if after.bias is not None and after.bias_error is not None and with_bias:
            b_rows = case.sharding.bias_index(s)
            check(bias[0], bias[1], r, after.bias[b_rows], after.bias_error[b_rows], bias[2])
        out_rows = s if ev.output_is_sharded else slice(None)
        check(output[0], output[1], r, after.output[..., out_rows], after.output_bound[..., out_rows], output[2])
        in_rows = s if ev.input_is_sliced else slice(None)
        check(input_grad[0], input_grad[1], r, after.input_grad[..., in_rows], after.input_grad_bound[..., in_rows],
              input_grad[2])
        check(weight_grad[0], weight_grad[1], r, after.weight_grad[rows], after.weight_grad_bound[rows],
              weight_grad[2])
        if after.bias_grad is not None and after.bias_grad_bound is not None and with_bias:
            b_rows = case.sharding.bias_index(s)
            check(bias_grad[0], bias_grad[1], r, after.bias_grad[b_rows], after.bias_grad_bound[b_rows], bias_grad[2])


# -- 12. the layer as training loops use it -----------------------------------------------------------
def _usage_raised(ev: Evidence, name: str) -> list[Violation]:
    failed = [r for r, res in enumerate(ev.ranks) if res.usage_error]
    if not failed:
        return []
    errors = "; ".join(f"rank {r}: {ev.ranks[r].usage_error.splitlines()[0]}" for r in failed)
    return [Violation(name, f"raised on rank(s) {failed}: {errors}", failed[0], "usage")]


_READ_KEY = object()


def _rank_checks(ev: Evidence, name: str, out: list[Violation]):
    """``check(quantity, key, r, expected, bound)``: compare rank ``r``'s ``key`` (or, given ``actual``,
    that tensor or ``None``: one entry of a per-micro-batch list) and record a violation."""
    def check(quantity: str, key: str, r: int, expected, bound, actual=_READ_KEY) -> None:
        m = compare(ev.ranks[r].get(key) if actual is _READ_KEY else actual, expected, bound, f"rank {r} {quantity}")
        if m:
            out.append(Violation(name, str(m), r, quantity, m))
    return check


def _accumulated(bound: torch.Tensor, total: torch.Tensor, dtype: torch.dtype, additions: int = 1) -> torch.Tensor:
    """The bound of a sum of grads accumulated in ``dtype``: each grad's bound, plus the additions'
    roundings (one unit roundoff of the sum's magnitude each, doubled like every bound here: the grads
    summed here are positive multiples of one grad, so no partial sum exceeds the total)."""
    return bound + additions * (tol.SAFETY * tol.unit_roundoff(dtype) * total.abs() + tol.smallest_subnormal(dtype))


def micro_batch_scales(k: int) -> list[float]:
    """The scales of the ``k`` micro-batches' inputs and upstream grads: ``1, 2, 4, ...`` (exact in every
    dtype; unequal, so a backward that used another call's input changes the sum)."""
    return [2.0 ** i for i in range(k)]


def _listed(ev: Evidence, r: int, key: str, k: int) -> list:
    """Rank ``r``'s per-micro-batch list ``key``, ``k`` entries (missing ones ``None``)."""
    value = ev.ranks[r].get(key) or []
    return [value[i] if i < len(value) else None for i in range(k)]  # a shorter list: the rest missing


@spec_property("usage")
def micro_batches_accumulate_like_the_dense_layer(ev: Evidence) -> list[Violation]:
    """``k`` forwards before their backwards (micro-batches, a layer shared by several branches, activation
    checkpointing's re-forward; ``k`` is drawn, 2-4): inputs ``x, 2x, 4x, ...``, each output read after
    every forward ran; then the backwards with upstream grads ``g, 2g, 4g, ...`` in the reverse order, with
    no ``zero_grad`` between. Each output and input grad is the dense one for its own input and upstream
    grad, and the parameter grads accumulate: weight grad ``sum grad(2^i x, 2^i g)``, bias grad ``2^k - 1``
    times the dense one (the upstream grads differ, so a backward that used another call's input changes
    the sum). Then again on another fresh layer with the backwards in the forwards' order: the same grads.
    Catches an input kept on the module instead of the autograd context (one slot, a stack that only the
    reverse order pops right, a ring of two slots that a third forward overwrites), an output that is a
    view of a reused buffer, and a grad assigned instead of accumulated."""
    name = "micro_batches_accumulate_like_the_dense_layer"
    out = _usage_raised(ev, name)
    if out:
        return out
    t, case, dt = _tensors(ev), ev.case, ev.case.torch_dtype
    k, ws = case.micro_batches, case.world_size
    scales = micro_batch_scales(k)
    dense = [dense_linear(dataclasses.replace(t, x=s * t.x, grad_out=s * t.grad_out)) for s in scales]
    out_bounds = [tol.output_bound(s * t.x, t.weight, t.bias, dt, ws) for s in scales]
    g_bound = tol.input_grad_bound(t.grad_out, t.weight, dt, ws)  # micro-batch i's: scale_i times it (exact)
    w_bound = torch.stack([tol.weight_grad_bound(s * t.grad_out, s * t.x, dt, ws) for s in scales]).sum(0)
    w_total = torch.stack([d.weight_grad for d in dense]).sum(0)
    check = _rank_checks(ev, name, out)
    for r, res in enumerate(ev.ranks):
        cols = ev.rank_slice(r) if ev.output_is_sharded else slice(None)
        ins = ev.rank_slice(r) if ev.input_is_sliced else slice(None)
        outputs = _listed(ev, r, "usage_outputs", k)
        for orders, key in (("", "usage_input_grads"), (", backwards in the forwards' order", "usage_in_order_input_grads")):
            grads = _listed(ev, r, key, k)
            for i, s in enumerate(scales):
                if not orders:
                    check(f"micro-batch {i + 1} of {k}'s output, read after every forward ran", "usage_outputs", r,
                          dense[i].output[..., cols], out_bounds[i][..., cols], outputs[i])
                check(f"micro-batch {i + 1} of {k}'s input grad{orders}", key, r, s * ev.dense.input_grad[..., ins],
                      s * g_bound[..., ins], grads[i])
        rows = case.sharding.weight_index(ev.rank_slice(r))
        # the quantities' words are those the known-failure entries match (no digits: "(weight|bias) grad[a-z ,']")
        for what, key in (("accumulated over every backward", "usage_weight_grad"),
                          ("accumulated, backwards in the forwards' order", "usage_in_order_weight_grad")):
            check(f"weight grad {what}", key, r, w_total[rows],
                  _accumulated(w_bound[rows], w_total[rows], dt, k - 1))
        if t.bias is not None and res.bias_shard is not None:
            b_rows = case.sharding.bias_index(ev.rank_slice(r))
            b_bound = sum(scales) * tol.bias_grad_bound(t.grad_out, dt, ws)[b_rows]
            b_total = sum(scales) * ev.dense.bias_grad[b_rows]  # g + 2g + 4g + ...
            for what, key in (("accumulated over every backward", "usage_bias_grad"),
                              ("accumulated, backwards in the forwards' order", "usage_in_order_bias_grad")):
                check(f"bias grad {what}", key, r, b_total,
                      _accumulated(b_bound, b_total, dt, k - 1))
    return out


@spec_property("usage")
def a_frozen_input_still_trains_the_layer(ev: Evidence) -> list[Violation]:
    """An input that does not require grad (the first layer after a frozen embedding, a probe on frozen
    features): backward still gives the weight and bias their dense grads."""
    name = "a_frozen_input_still_trains_the_layer"
    out = _usage_raised(ev, name)
    if out:
        return out
    t, case, dt = _tensors(ev), ev.case, ev.case.torch_dtype
    check = _rank_checks(ev, name, out)
    w_bound = tol.weight_grad_bound(t.grad_out, t.x, dt, case.world_size)
    for r, res in enumerate(ev.ranks):
        rows = case.sharding.weight_index(ev.rank_slice(r))
        check("weight grad with a frozen input", "usage_frozen_weight_grad", r, ev.dense.weight_grad[rows],
              w_bound[rows])
        if t.bias is not None and res.bias_shard is not None:
            b_rows = case.sharding.bias_index(ev.rank_slice(r))
            check("bias grad with a frozen input", "usage_frozen_bias_grad", r, ev.dense.bias_grad[b_rows],
                  tol.bias_grad_bound(t.grad_out, dt, case.world_size)[b_rows])
    return out


@spec_property("usage")
def inference_calls_leave_training_unchanged(ev: Evidence) -> list[Violation]:
    """A call under ``torch.inference_mode()`` (evaluation between training steps, serving from the
    training process) returns the dense output, and the training call after it is unaffected: its
    output and grads are the dense ones (a buffer cached under inference mode cannot be used by
    autograd afterwards), although a call under ``torch.no_grad()`` (on ``2x``: a metric, a generation
    step) ran between its forward and its backward and returned its own dense output (a mode the
    layer keeps on the module is the last call's, not the forward's)."""
    name = "inference_calls_leave_training_unchanged"
    out = _usage_raised(ev, name)
    if out:
        return out
    t, case, dt = _tensors(ev), ev.case, ev.case.torch_dtype
    doubled = dense_linear(dataclasses.replace(t, x=2 * t.x))
    check = _rank_checks(ev, name, out)
    g_bound = tol.input_grad_bound(t.grad_out, t.weight, dt, case.world_size)
    w_bound = tol.weight_grad_bound(t.grad_out, t.x, dt, case.world_size)
    for r, res in enumerate(ev.ranks):
        y, b = _expected_output(ev, r)
        check("output under inference_mode", "usage_inference_output", r, y, b)
        check("output of the training call after it", "usage_after_inference_output", r, y, b)
        cols = ev.rank_slice(r) if ev.output_is_sharded else slice(None)
        check("output under no_grad, between the training call's forward and backward", "usage_no_grad_output",
              r, doubled.output[..., cols], 2 * b)
        ins = ev.rank_slice(r) if ev.input_is_sliced else slice(None)
        check("input grad of the training call", "usage_after_inference_input_grad", r,
              ev.dense.input_grad[..., ins], g_bound[..., ins])
        rows = case.sharding.weight_index(ev.rank_slice(r))
        check("weight grad of the training call", "usage_after_inference_weight_grad", r,
              ev.dense.weight_grad[rows], w_bound[rows])
        if t.bias is not None and res.bias_shard is not None:
            b_rows = case.sharding.bias_index(ev.rank_slice(r))
            check("bias grad of the training call", "usage_after_inference_bias_grad", r,
                  ev.dense.bias_grad[b_rows], tol.bias_grad_bound(t.grad_out, dt, case.world_size)[b_rows])
    return out


# -- 13. the layer as built ---------------------------------------------------------------------------
# what each convention says a layer's bias is when its builder returns it (before the suite writes into it)
BIAS_AS_BUILT = {"simple-module": "zero"}  # any other convention: this protocol's, the given bias's slice


@spec_property("as_built")
def the_layer_as_built_follows_the_convention(ev: Evidence) -> list[Violation]:
    """The layer as its builder returned it, before the suite writes anything into it (``impl.as_built``):
    its bias is what the convention says it starts as — this protocol's builders are given the bias, so
    their slice of it (none: zero); the simple-module convention's starts at zero, and the suite then
    writes a random one — in the layer's dtype; and a replicated (row) bias is identical on every rank
    that holds one. The suite overwrites the bias of every layer it then checks, so a bias initialised
    like ``nn.Linear``'s (random, and different per rank) shows nowhere else. (The weight as built is
    the shards property's: the suite never writes it before that check.)"""
    name = "the_layer_as_built_follows_the_convention"
    t, case, out = _tensors(ev), ev.case, []
    zero = BIAS_AS_BUILT.get(ev.convention) == "zero" or t.bias is None
    convention = f"the {ev.convention} convention's" if ev.convention else "this protocol's"
    for r, res in enumerate(ev.ranks):
        b = res.built_bias_shard
        if b is None:
            continue  # no bias, or a row bias on some ranks only: where it lives is the shards property's
        if b.dtype != case.torch_dtype:
            out.append(Violation(name, f"rank {r}'s bias as built is {b.dtype}, the layer's dtype is "
                                       f"{case.torch_dtype}", r, "bias as built"))
            continue
        if zero:
            if bool(b.ne(0).any()):
                why = "the builder was given no bias" if t.bias is None else f"{convention} bias starts at zero"
                out.append(Violation(name, f"rank {r}'s bias as built is not zero (max |b| = "
                                           f"{float(b.double().abs().max()):.3g}): {why}", r, "bias as built"))
            continue
        expected = t.bias[case.sharding.bias_index(ev.rank_slice(r))]
        if b.shape != expected.shape or not torch.equal(b, expected):
            what = "its slice of the bias" if case.sharding.bias_sharded else "the whole bias"
            out.append(Violation(name, f"rank {r}'s bias as built (shape {list(b.shape)}) is not {what} its builder "
                                       f"was given (shape {list(expected.shape)})", r, "bias as built"))
    if not case.sharding.bias_sharded:
        held = [(r, res.built_bias_shard) for r, res in enumerate(ev.ranks) if res.built_bias_shard is not None]
        for r, b in held[1:]:
            first, b0 = held[0]
            if b.shape != b0.shape or b.dtype != b0.dtype or not torch.equal(b, b0):
                out.append(Violation(name, f"rank {r}'s row bias as built differs from rank {first}'s: a replicated "
                                           "bias must start identical on every rank that holds it", r,
                                     "replicated bias as built"))
    return out


# -- 14. state_dict ------------------------------------------------------------------------------------
@spec_property("forward", "backward", "train_step", "state_dict")
def a_state_dict_reloads_the_trained_layer(ev: Evidence) -> list[Violation]:
    """After the training step, ``state_dict()`` of the trained layer loaded (``load_state_dict``, strict)
    into a freshly built one (built from the weights before the step): the fresh layer holds the trained
    shards and computes, on the step's input and upstream grad, the output and grads of the dense layer
    after the update — a checkpoint restores the layer. Catches a shard or a copy of it kept outside
    the state_dict (a plain attribute), which a reloaded layer computes from or restores at its first call."""
    name = "a_state_dict_reloads_the_trained_layer"
    for field_, what in (("train_step_error", "the training step"), ("state_dict_error", "reloading the state_dict")):
        failed = [r for r, res in enumerate(ev.ranks) if res.get(field_)]
        if failed:
            errors = "; ".join(f"rank {r}: {ev.ranks[r].get(field_).splitlines()[0]}" for r in failed)
            return [Violation(name, f"{what} raised on rank(s) {failed}: {errors}", failed[0], "state_dict")]
    out: list[Violation] = []

    def check(quantity: str, key: str, r: int, expected, bound, what: str) -> None:
        m = compare(ev.ranks[r].get(key), expected, bound, f"rank {r} {what}")
        if m:
            out.append(Violation(name, str(m), r, quantity, m))

    _check_after_update(ev, after_update(ev), check, RELOADED_KEYS)
    return out


# -- 15. the module converted after construction ----------------------------------------------------------
def conversion_text(conversion: tuple[str, str], dtype: str) -> str:
    build, method = conversion
    call = f"layer.{method}()" if method != "to" else f"layer.to(torch.{dtype})"
    return f"built in {build}, then {call}"


@spec_property("conversion")
def a_converted_layer_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    """A layer built in another dtype (the case's weights rounded to it) and converted to the case's as
    users do — ``layer.double()``, ``layer.half()``, ``layer.to(dtype)`` (``cases.conversion_for``) —
    holds its shards in the case's dtype and computes what the dense layer with those weights computes
    in that dtype: output (and its dtype), input, weight and bias grads, within the case's bound. Catches
    a collective's dtype, a buffer or a cast fixed at construction."""
    name = "a_converted_layer_matches_the_dense_layer"
    conversion = ev.outcome.conversion
    if conversion is None:
        return []  # the impl declares no other dtype to build in
    how = conversion_text(conversion, ev.case.dtype)
    failed = [r for r, res in enumerate(ev.ranks) if res.conversion_error]
    if failed:
        errors = "; ".join(f"rank {r}: {ev.ranks[r].conversion_error.splitlines()[0]}" for r in failed)
        return [Violation(name, f"the layer {how} raised on rank(s) {failed}: {errors}", failed[0], "conversion")]
    t, case, dt, ws = _tensors(ev), ev.case, ev.case.torch_dtype, ev.case.world_size
    build = getattr(torch, conversion[0])
    weight = t.weight.to(build).to(dt)  # what the converted layer holds: conversion is rounding, and exact back
    bias = None if t.bias is None else t.bias.to(build).to(dt)
    dense = dense_linear(dataclasses.replace(t, weight=weight, bias=bias, update=None))
    out: list[Violation] = []

    def check(what: str, key: str, r: int, expected, bound) -> None:
        m = compare(ev.ranks[r].get(key), expected, bound, f"rank {r} {what} of the converted layer")
        if m:
            out.append(Violation(name, f"{m} (the layer {how})", r, f"{what} of the converted layer", m))

    y_bound = tol.output_bound(t.x, weight, bias, dt, ws)
    g_bound = tol.input_grad_bound(t.grad_out, weight, dt, ws)
    w_bound = tol.weight_grad_bound(t.grad_out, t.x, dt, ws)
    for r, res in enumerate(ev.ranks):
        s = ev.rank_slice(r)
        rows = case.sharding.weight_index(s)
        shards = [("weight shard", res.converted_weight_shard, weight[rows])]
        if bias is not None and res.converted_bias_shard is not None:
            shards.append(("bias", res.converted_bias_shard, bias[case.sharding.bias_index(s)]))
        for what, got, expected in shards:
            if got is None or got.dtype != dt or got.shape != expected.shape or not torch.equal(got, expected):
                found = "none" if got is None else f"{got.dtype} {list(got.shape)}"
                out.append(Violation(name, f"rank {r}'s {what} of the layer {how} is {found}, not the {dt} "
                                           f"{list(expected.shape)} the conversion gives", r,
                                     f"{what} of the converted layer"))
        o = res.converted_output
        if o is not None and o.dtype != dt:
            out.append(Violation(name, f"rank {r}'s output of the layer {how} is {o.dtype}, the input was {dt}", r,
                                 "output of the converted layer"))
        cols = s if ev.output_is_sharded else slice(None)
        check("output", "converted_output", r, dense.output[..., cols], y_bound[..., cols])
        ins = s if ev.input_is_sliced else slice(None)
        check("input grad", "converted_input_grad", r, dense.input_grad[..., ins],
              g_bound[..., ins])
        check("weight grad", "converted_weight_grad", r, dense.weight_grad[rows], w_bound[rows])
        if dense.bias_grad is not None and res.converted_bias_shard is not None:
            b_rows = case.sharding.bias_index(s)
            check("bias grad", "converted_bias_grad", r, dense.bias_grad[b_rows],
                  tol.bias_grad_bound(t.grad_out, dt, ws)[b_rows])
    return out


# -- 16. mixed precision ---------------------------------------------------------------------------------
MIXED_STEP_KEYS = tuple((f"{q} under autocast", f"mixed_{k}", f"{q} under autocast")
                        for q, k in (("weight shard after the step", "updated_weight_shard"),
                                     ("bias after the step", "updated_bias_shard"),
                                     ("output after the step", "step_output"),
                                     ("input grad after the step", "step_input_grad"),
                                     ("weight grad after the step", "step_weight_grad"),
                                     ("bias grad after the step", "step_bias_grad")))


def mixed_precision_text(mixed: tuple[str, str]) -> str:
    param, compute = mixed
    return f"{param} parameters, torch.autocast('cpu', dtype=torch.{compute}), a {compute} input"


@spec_property("mixed_precision")
def a_mixed_precision_step_matches_the_dense_layer(ev: Evidence) -> list[Violation]:
    """Automatic mixed precision as training loops run it (``cases.mixed_precision_for``): a fresh layer
    whose parameters are float32 (the master weights) is called under ``torch.autocast`` with a 16-bit
    compute dtype — the case's when it is 16-bit, else bfloat16 — on an input in that dtype (what the
    layer before it in the autocast region returns); backward runs outside autocast, ``torch.optim.SGD``
    steps the float32 parameters, the delta is added, and the layer is called again under autocast.
    Before the step its output and grads are the dense layer's within the compute dtype's bound (the
    tensors are rounded to it, so autocast's casts are exact); after it, its float32 shards hold the dense
    update and its output and grads are the dense layer's after the update, within the compute dtype's
    bound plus the cast of the updated parameters to it (``tolerance.cast_error``). A reduction in the
    compute dtype (a row layer's all-reduce of 16-bit partial outputs) is within the bound, as for a
    16-bit case. The step is judged once the layer is right before it (an error before it carries into
    it). Catches a low-precision copy of the weight cast once and reused: stale after the optimizer step.
    Not run (holds) when the impl does not declare float32 and a 16-bit dtype."""
    name = "a_mixed_precision_step_matches_the_dense_layer"
    mixed = ev.outcome.mixed_precision
    if mixed is None:
        return []  # the impl declares no float32 parameters with a 16-bit compute dtype
    how = mixed_precision_text(mixed)
    failed = [r for r, res in enumerate(ev.ranks) if res.mixed_precision_error]
    if failed:
        errors = "; ".join(f"rank {r}: {ev.ranks[r].mixed_precision_error.splitlines()[0]}" for r in failed)
        return [Violation(name, f"mixed precision ({how}) raised on rank(s) {failed}: {errors}", failed[0],
                          "mixed precision")]
    param, compute = (getattr(torch, d) for d in mixed)
    case, ws = ev.case, ev.case.world_size
    t = rounded_to(_tensors(ev), compute)
    dense = dense_linear(dataclasses.replace(t, update=None))
    out: list[Violation] = []

    def check(quantity: str, key: str, r: int, expected, bound, what: Optional[str] = None) -> None:
        m = compare(ev.ranks[r].get(key), expected, bound, f"rank {r} {what or quantity}")
        if m:
            out.append(Violation(name, f"{m} ({how})", r, quantity, m))

    y_bound = tol.output_bound(t.x, t.weight, t.bias, compute, ws)
    g_bound = tol.input_grad_bound(t.grad_out, t.weight, compute, ws)
    w_bound = tol.weight_grad_bound(t.grad_out, t.x, compute, ws)
    for r, res in enumerate(ev.ranks):
        s = ev.rank_slice(r)
        cols = s if ev.output_is_sharded else slice(None)
        check("output under autocast", "mixed_output", r, dense.output[..., cols], y_bound[..., cols])
        ins = s if ev.input_is_sliced else slice(None)
        check("input grad under autocast", "mixed_input_grad", r, dense.input_grad[..., ins], g_bound[..., ins])
        rows = case.sharding.weight_index(s)
        check("weight grad under autocast", "mixed_weight_grad", r, dense.weight_grad[rows], w_bound[rows])
        if dense.bias_grad is not None and res.bias_shard is not None:
            b_rows = case.sharding.bias_index(s)
            check("bias grad under autocast", "mixed_bias_grad", r, dense.bias_grad[b_rows],
                  tol.bias_grad_bound(t.grad_out, compute, ws)[b_rows])
    if out:
        return out  # wrong before the step: the step's results carry the same error (reported once)
    _check_after_update(ev, updated(t, dense, ws, param, compute), check, MIXED_STEP_KEYS)
    return out


# -- 17. really tensor parallel: measured outside the candidate ---------------------------------------
# Properties whose evidence the candidate's processes cannot forge because the verdict measures it from
# outside them (the kernel's byte count of a loopback the sandbox gives the submission alone). Where no
# such count exists (pytest --impl, grading --unsandboxed) they are not available: skipped, never guessed.
MEASURED_OUTSIDE = ("really_tensor_parallel",)

# -- a forward-only layer (capability backward=False) ------------------------------------------------
# What is judged of a layer whose backward is not supported: its shards, its forward and a second call;
# every other property reads a backward pass (grads, a training step, the usage protocols, the
# collectives of a backward, a converted layer's grads) and is not checked (spec.family.Family.not_declared).
FORWARD = ("shards_rebuild_the_dense_weight", "output_matches_the_dense_layer", "ranks_agree_on_the_output",
           "output_shape_and_dtype_match_nn_linear", "repeated_calls_are_independent",
           "the_layer_as_built_follows_the_convention")

# One pass = one forward and its backward, each stage's share (tpconform.families.linear.worker): the
# first call, a second call (forward only), the training step's call, and the usage protocols' calls
# (four: a frozen input, an inference call, the training call after it and the no_grad call inside it;
# plus the micro-batches, k in each order: :func:`passes`); the reloaded
# layer's call (state_dict) and the converted layer's (conversion); the mixed-precision layer's two calls
# (before and after its step); the layer as built runs none.
PASSES = {"forward": 1, "backward": 0, "second_call": 1, "collective_volume": 0, "train_step": 1, "usage": 4,
          "as_built": 0, "state_dict": 1, "conversion": 1, "mixed_precision": 2}
# What one pass may put on the wire, in elements: every rank may send every other rank all of its
# activations (activation_elements: the input, the output and their grads), at 4 bytes an element or
# the dtype's size when larger. The reference sends far less (an all-gather or all-reduce of one
# activation each way); the margin admits a layer that all-gathers partial results where an
# all-reduce would do, and Gloo's algorithms.
# Bytes per pass per pair of ranks that are not payload: TCP/IP headers (66 bytes a segment on lo),
# acknowledgements, Gloo's own headers, the harness's status exchange. Measured with the reference
# (benchmarks/parallelism_bytes.py): 1.0-2.3 KiB at 2-8 ranks; this is about twice that.
OVERHEAD_PER_PASS_PAIR = 4 * 1024
OVERHEAD_FIXED = 32 * 1024  # per example: anything once per example (the build-only round trip's exchange)


def passes(stages, micro_batches: int = 2) -> int:
    """The passes of an example that runs ``stages`` (the usage stage's micro-batches: ``micro_batches`` in each order)."""
    return sum(PASSES.get(s, 0) for s in stages) + (2 * micro_batches if "usage" in stages else 0)


def loopback_allowance(case: LayerCase, stages) -> int:
    """The most bytes a tensor-parallel layer moves between its ranks over the loopback in one example
    that ran ``stages``: per pass, every rank may send each other rank all its activations
    (:func:`activation_elements`), plus :data:`OVERHEAD_PER_PASS_PAIR` per pair of ranks; plus
    :data:`OVERHEAD_FIXED`. A layer that moves its weight instead sends (ranks − 1) × out × in elements per
    gather: far more as soon as the weight is large against the activations (few batch rows, wide
    features: the grading's parallelism cases, ``tpconform.families.linear.strategy.parallelism_cases``)."""
    ws = case.tp_size or case.world_size
    if ws < 2:
        return OVERHEAD_FIXED
    pairs = ws * (ws - 1)
    element = max(4, torch.empty((), dtype=case.torch_dtype).element_size())
    n = max(1, passes(stages, case.micro_batches))
    return n * pairs * (activation_elements(case) * element + OVERHEAD_PER_PASS_PAIR) + OVERHEAD_FIXED


@spec_property("forward", "backward", "train_step")
def really_tensor_parallel(ev: Evidence) -> list[Violation]:
    """Measured outside the candidate's processes, so it cannot be forged from inside them:

    - **at most activations cross**: the bytes the submission's own loopback carried while the ranks
      built and ran the example (the kernel's count, read by the verdict before and after; a rank can
      add bytes to it, never remove them) are at most :func:`loopback_allowance`: no rank gathers the
      weight;
    - **partial results must cross**: at world size >= 2 every rank is sent only its own slice of the
      training step's delta, an update no other rank sees; after it, the output and input grad match
      the dense layer with every rank's update only if the ranks exchanged their partial results. A
      layer computing from a private full copy of the weight (and no exchange) cannot.

    Not available (skipped) where no private count exists: ``pytest --impl`` and ``--unsandboxed``."""
    name = "really_tensor_parallel"
    sent = ev.outcome.loopback_bytes
    if sent is None:
        return []  # not measured: the check is not available here (Family.not_applicable says so)
    case, out = ev.case, []
    limit = loopback_allowance(case, ev.outcome.stages)
    if sent > limit:
        ws = case.tp_size or case.world_size
        weight = case.out_features * case.in_features * max(4, torch.empty((), dtype=case.torch_dtype).element_size())
        out.append(Violation(name, f"the ranks sent {sent} bytes over the loopback (the kernel's count); moving "
                                   f"activations takes at most {limit} here, while gathering the weight once "
                                   f"takes {(ws - 1) * weight}: a rank sends weights, not partial results", None,
                             "loopback bytes"))
    if (case.tp_size or case.world_size) < 2 or "train_step" not in ev.outcome.stages:
        return out
    failed = [r for r, res in enumerate(ev.ranks) if res.train_step_error]
    if failed:
        out.append(Violation(name, f"the training step raised on rank(s) {failed}: nothing shows the ranks "
                                   "exchange their partial results", failed[0], "after a private update"))
        return out
    after = after_update(ev)
    for r, res in enumerate(ev.ranks):
        out_rows = ev.rank_slice(r) if ev.output_is_sharded else slice(None)
        in_rows = ev.rank_slice(r) if ev.input_is_sliced else slice(None)
        for quantity, key, expected, bound in (
                ("output after a private update", "step_output", after.output[..., out_rows],
                 after.output_bound[..., out_rows]),
                ("input grad after a private update", "step_input_grad", after.input_grad[..., in_rows],
                 after.input_grad_bound[..., in_rows])):
            m = compare(res.get(key), expected, bound, f"rank {r} {quantity.split(' after')[0]} after every rank "
                                                       "added a delta only it was sent")
            if m:
                out.append(Violation(name, f"{m}\n(matching the dense layer here needs the other ranks' partial "
                                           "results: a rank that computes from its own copy of the weight misses "
                                           "their updates)", r, quantity, m))
                break
    return out


# -- preconditions shared by every property ----------------------------------------------------------
def preconditions(ev: Evidence, prop_name: str) -> Optional[list[Violation]]:
    """Violations that stop any property from being evaluated, ``[]`` when the example conforms
    vacuously (a declared construction error), ``None`` when the property should be evaluated."""
    oc = ev.outcome
    if oc.crash:
        return [Violation(prop_name, f"the example did not complete: {oc.crash}", None, "run")]
    if oc.construct_failed:
        failed = oc.ranks[0].construct_failed_ranks
        everywhere = len(failed) == ev.case.world_size
        if ev.case.uneven and not ev.uneven_shards_supported and everywhere:
            return []  # declared: non-divisible dims are rejected at construction
        why = ("it declares uneven_shards=True" if ev.case.uneven
               else "the dims divide evenly") if everywhere else "it raised on some ranks only"
        errors = {r: res.construct_error for r, res in enumerate(oc.ranks)}
        return [Violation(prop_name, construction_raised(failed, errors, f" but {why}:"), None, "construction")]
    return None


def evaluate(ev: Evidence, prop_name: str) -> list[Violation]:
    pre = preconditions(ev, prop_name)
    if pre is not None:
        return pre
    return SPEC[prop_name](ev)
