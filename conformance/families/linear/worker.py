"""The linear family, worker side: build the layer on this rank, run the example's stages, report plain tensors."""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from tpconform.families.linear.case import STAGES, LayerCase
from tpconform.spec.partition import partition
from tpconform.transport.worker_tools import CollectiveVolume, as_tensor, error_text, exchange, laid_out, offsets


def run_example(impl, case: LayerCase, data: dict, group, stages=STAGES) -> dict:
    """Build the layer, report its shards, then run the ``stages`` asked for (all by default; a
    test of one property asks only for those it reads: see ``tpconform.families.linear.verdict.NEEDS``)."""
    stages = set(STAGES if stages is None else stages)
    rank = dist.get_rank(group)
    weight, bias, x, grad_out = data["weight"], data["bias"], data["x"], data["grad_out"]
    result: dict = {"rank": rank}

    # 1. build; every rank joins the status exchange, even when its build raised
    try:
        layer = _build(impl, case, weight, bias, group)
        w_shard, b_shard = impl.shards(layer)
        w_shard = as_tensor(w_shard, "the weight shard")
        shape = list(w_shard.shape) if w_shard.dim() == 2 else [-1, -1]
        status = [1, *shape]
        result["weight_shard"] = w_shard.detach().clone()
        result["bias_shard"] = None if b_shard is None else as_tensor(b_shard, "the bias shard").detach().clone()
        if "as_built" in stages:  # the shards as the builder made them, before the suite wrote into them
            w_built, b_built = getattr(impl, "as_built", impl.shards)(layer)
            result["built_weight_shard"] = as_tensor(w_built, "the weight shard as built").detach().clone()
            result["built_bias_shard"] = (None if b_built is None
                                          else as_tensor(b_built, "the bias as built").detach().clone())
    except Exception as exc:
        status = [0, -1, -1]
        result["construct_error"] = error_text(exc)
    table = exchange(status, group)
    if any(row[0] == 0 for row in table):
        result["construct_failed_ranks"] = [r for r, row in enumerate(table) if row[0] == 0]
        return result

    if not stages:
        return result

    # 2. the input this rank feeds: full, or its slice along the partition its weight implies
    sliced = data.get("sliced")  # the verdict sent only this rank's slice of "x" or "grad_out" (runner.run)
    x_in, g_in = _rank_inputs(case, table, rank, x, grad_out, sliced)
    x_sent, g_sent = x_in.detach().clone(), g_in.detach().clone()  # contiguous copies: the values
    # (a forward-only layer, capability backward=False, is sent none of these: its second call follows the forward)
    backward = bool(stages & {"backward", "collective_volume", "train_step"})
    x_in.requires_grad_(backward)

    # 3. forward (and backward), counting what this rank sends through collectives when asked to
    with CollectiveVolume() if "collective_volume" in stages else contextlib.nullcontext() as volume:
        output = as_tensor(impl.forward(layer, x_in), "the layer's output")
        result["output"] = output.detach().clone()
        if backward:
            if output.shape != g_in.shape:
                # keep every rank's backward collectives matched: back-propagate zeros of the output's shape
                result["upstream_grad_replaced"] = (f"output shape {list(output.shape)} != upstream grad "
                                                    f"{list(g_in.shape)}")
                g_in = g_sent = torch.zeros_like(output.detach())
            if output.requires_grad:
                output.backward(g_in)
    if volume is not None:
        result["collective_elements"], result["collectives"] = volume.elements, volume.calls
    result["input_modified"] = not torch.equal(x_in.detach(), x_sent)
    if backward:
        _after_backward(impl, layer, case, data, group, table, rank, x_in, x_sent, g_in, g_sent, stages, result)
    elif "second_call" in stages:
        _second_call(impl, layer, case, x_sent, result)
    # 6. the layer as training loops use it: each protocol on a fresh layer built from the same weights
    if "usage" in stages:
        _usage(impl, case, data, group, table, rank, result)
    # 7. the module converted after construction: a fresh layer built in another dtype, then converted
    if "conversion" in stages and data.get("conversion"):
        try:
            _converted(impl, case, data, group, table, rank, result)
        except Exception as exc:
            result["conversion_error"] = error_text(exc)
    # 8. mixed precision: a fresh layer with float32 parameters, called under autocast, trained one step
    if "mixed_precision" in stages and data.get("mixed_precision"):
        try:
            _mixed_precision(impl, case, data, group, table, rank, result)
        except Exception as exc:
            result["mixed_precision_error"] = error_text(exc)
    return result


def _after_backward(impl, layer, case: LayerCase, data: dict, group, table, rank: int, x_in, x_sent, g_in, g_sent,
                    stages, result: dict) -> None:
    """Stages 3 (the grads), 4 (a second call) and 5 (a training step, then its state_dict reloaded),
    after the first backward."""
    result["input_grad"] = None if x_in.grad is None else x_in.grad.detach().clone()
    _grads(impl, layer, "", result)
    result["grad_modified"] = not torch.equal(g_in, g_sent)

    # 4. a second call, on the negated input: nothing from the first call may leak into it
    if "second_call" in stages:
        _second_call(impl, layer, case, x_sent, result)

    # 5. a training step on the shards, then forward and backward again (tpconform.families.linear.tensors.UpdateTensors)
    #    (its failure is its own: what the earlier stages found stands; no harness collective follows,
    #    so a rank that raised alone leaves the others waiting in the layer's collective, a hang as before)
    if "train_step" in stages:
        try:
            _train_step(impl, layer, case, data["update"], table, rank, result, data.get("sliced"))
        except Exception as exc:
            result["train_step_error"] = error_text(exc)
        else:
            # 5b. the trained layer's state_dict() loaded into a fresh layer, which then computes as it does
            if "state_dict" in stages:
                try:
                    _reloaded(impl, layer, case, data, group, table, rank, result)
                except Exception as exc:
                    result["state_dict_error"] = error_text(exc)


def _second_call(impl, layer, case: LayerCase, x_sent, result: dict) -> None:
    """A second call, on the negated input (``second_output``)."""
    with torch.no_grad():
        x_again = laid_out(-x_sent, case.layout)
        again = as_tensor(impl.forward(layer, x_again), "the second call's output")
    result["second_output"] = again.detach().clone()


def _build(impl, case: LayerCase, weight, bias, group):
    if case.kind == "column":
        return impl.column(weight.clone(), None if bias is None else bias.clone(),
                           gather_output=case.gather_output, group=group)
    return impl.row(weight.clone(), None if bias is None else bias.clone(),
                    input_is_parallel=case.input_is_parallel, group=group)


def _backward(output, grad) -> None:
    """``output.backward(grad)``; zeros of the output's shape when the shapes differ (the ranks'
    backward collectives stay matched: the shape property reports the difference)."""
    if output.requires_grad:
        output.backward(grad if output.shape == grad.shape else torch.zeros_like(output.detach()))


def _grads(impl, layer, prefix: str, result: dict) -> None:
    """The shards' grads as ``impl.shard_grads`` reports them, into ``{prefix}weight_grad`` / ``{prefix}bias_grad``."""
    w_grad, b_grad = impl.shard_grads(layer)
    result[f"{prefix}weight_grad"] = None if w_grad is None else as_tensor(w_grad, "the weight grad").detach().clone()
    result[f"{prefix}bias_grad"] = None if b_grad is None else as_tensor(b_grad, "the bias grad").detach().clone()


def _usage(impl, case: LayerCase, data: dict, group, table, rank: int, result: dict) -> None:
    """Three protocols, each on a fresh layer (reported in ``usage_*``; the first that raises is named in
    ``usage_error`` and ends the stage on this rank):

    - micro-batches: ``k = case.micro_batches`` forwards (inputs ``x``, ``2x``, ``4x``, ...) before their
      backwards (upstream grads ``g``, ``2g``, ``4g``, ...: unequal, so swapped inputs change the sum), which run
      in the reverse order; each output is read after every forward ran, and the grads accumulate (no
      ``zero_grad`` between): weight grad ``sum grad(2^i x, 2^i g)``, bias grad ``(2^k - 1)`` times the dense
      one; then the same on another fresh layer with the backwards in the forwards' order (``usage_in_order_*``);
    - a frozen input (``requires_grad=False``): the weight and bias still get their grads;
    - a call under ``torch.inference_mode()`` before a training call, and one under ``torch.no_grad()``
      (on ``2x``) between that call's forward and its backward: the training call is unaffected."""
    x, grad_out, sliced = data["x"], data["grad_out"], data.get("sliced")

    def inputs(scale: float = 1.0, requires_grad: bool = True, grad_scale: float = 1.0):
        x_in, g_in = _rank_inputs(case, table, rank, x * scale, grad_out * grad_scale, sliced)
        return x_in.requires_grad_(requires_grad), g_in

    def micro_batches(in_reverse: bool) -> tuple[list, list, object]:
        """``k`` forwards on a fresh layer, then their backwards (in reverse order, or in the forwards');
        the outputs (read after every forward), the input grads, the layer."""
        layer = _build(impl, case, data["weight"], data["bias"], group)
        batches = [inputs(2.0 ** i, grad_scale=2.0 ** i) for i in range(case.micro_batches)]
        ys = [as_tensor(impl.forward(layer, x_i), f"micro-batch {i + 1}'s output") for i, (x_i, _) in enumerate(batches)]
        outputs = [y.detach().clone() for y in ys]
        for i in (reversed(range(len(ys))) if in_reverse else range(len(ys))):
            _backward(ys[i], batches[i][1])
        return outputs, [None if x_i.grad is None else x_i.grad.detach().clone() for x_i, _ in batches], layer

    protocol = "micro-batches"
    try:
        result["usage_outputs"], result["usage_input_grads"], layer = micro_batches(in_reverse=True)
        _grads(impl, layer, "usage_", result)

        protocol = "micro-batches, backwards in the forwards' order"
        _, result["usage_in_order_input_grads"], layer = micro_batches(in_reverse=False)
        _grads(impl, layer, "usage_in_order_", result)

        protocol = "a frozen input"
        layer = _build(impl, case, data["weight"], data["bias"], group)
        x3, g3 = inputs(requires_grad=False)
        _backward(as_tensor(impl.forward(layer, x3), "the output"), g3)
        _grads(impl, layer, "usage_frozen_", result)

        protocol = "inference_mode, then training"
        layer = _build(impl, case, data["weight"], data["bias"], group)
        x4, _ = inputs(requires_grad=False)
        with torch.inference_mode():
            y4 = as_tensor(impl.forward(layer, x4), "the inference call's output")
        result["usage_inference_output"] = y4.clone()
        x5, g5 = inputs()
        y5 = as_tensor(impl.forward(layer, x5), "the training call's output")
        result["usage_after_inference_output"] = y5.detach().clone()
        protocol = "a no_grad call between a training call's forward and its backward"
        x6, _ = inputs(2.0, requires_grad=False)
        with torch.no_grad():
            y6 = as_tensor(impl.forward(layer, x6), "the no_grad call's output")
        result["usage_no_grad_output"] = y6.detach().clone()
        _backward(y5, g5)
        result["usage_after_inference_input_grad"] = None if x5.grad is None else x5.grad.detach().clone()
        _grads(impl, layer, "usage_after_inference_", result)
    except Exception as exc:
        result["usage_error"] = f"{protocol}: {error_text(exc)}"


def _forward_backward(impl, layer, case: LayerCase, table, rank: int, x, grad_out, sliced, prefix: str,
                      result: dict, forward_context=contextlib.nullcontext) -> None:
    """The shards, then forward (inside ``forward_context()``) and backward on ``x`` / ``grad_out`` (this
    rank's part of them), into ``{prefix}weight_shard``, ``{prefix}output``, ``{prefix}input_grad``,
    ``{prefix}weight_grad``..."""
    w, b = impl.shards(layer)
    result[f"{prefix}weight_shard"] = as_tensor(w, "the weight shard").detach().clone()
    result[f"{prefix}bias_shard"] = None if b is None else as_tensor(b, "the bias shard").detach().clone()
    x_in, g_in = _rank_inputs(case, table, rank, x, grad_out, sliced)
    x_in.requires_grad_(True)
    with forward_context():
        output = as_tensor(impl.forward(layer, x_in), "the layer's output")
    result[f"{prefix}output"] = output.detach().clone()
    _backward(output, g_in)
    result[f"{prefix}input_grad"] = None if x_in.grad is None else x_in.grad.detach().clone()
    _grads(impl, layer, prefix, result)


def _converted(impl, case: LayerCase, data: dict, group, table, rank: int, result: dict) -> None:
    """A fresh layer built from the weights in ``data["conversion"]``'s dtype (the case's weights rounded
    to it), converted to the case's dtype as users do (``layer.double()``, ``layer.half()``,
    ``layer.to(dtype)``), then run forward and backward on the example's input and upstream grad."""
    build, method = data["conversion"]
    weight, bias = data["weight"].to(getattr(torch, build)), data["bias"]
    layer = _build(impl, case, weight, None if bias is None else bias.to(weight.dtype), group)
    layer = getattr(layer, method)() if method != "to" else layer.to(case.torch_dtype)
    _forward_backward(impl, layer, case, table, rank, data["x"], data["grad_out"], data.get("sliced"),
                      "converted_", result)


def _reloaded(impl, trained, case: LayerCase, data: dict, group, table, rank: int, result: dict) -> None:
    """``trained.state_dict()`` (the layer after the training step) loaded into a freshly built layer
    (``load_state_dict``, strict), which then runs forward and backward on the step's own input."""
    state = trained.state_dict()
    layer = _build(impl, case, data["weight"], data["bias"], group)
    layer.load_state_dict(state)
    update = data["update"]
    _forward_backward(impl, layer, case, table, rank, update["x"], update["grad_out"], data.get("sliced"),
                      "reloaded_", result)


def _mixed_precision(impl, case: LayerCase, data: dict, group, table, rank: int, result: dict) -> None:
    """Automatic mixed precision as training loops run it: a fresh layer whose parameters are float32 (the
    master weights: the case's weights rounded to the compute dtype, so exact in both), each forward under
    ``torch.autocast("cpu", dtype=compute)`` on an input in the compute dtype (what the layer before it in
    the autocast region returns), each backward outside it (``loss.backward()``); between them
    ``torch.optim.SGD`` steps the float32 parameters and the delta is added (:func:`_train_step`). Results
    in ``mixed_output`` ... ``mixed_step_bias_grad``."""
    param, compute = (getattr(torch, d) for d in data["mixed_precision"])

    def master(t):
        return None if t is None else t.to(compute).to(param)

    def low(t):
        return None if t is None else t.to(compute)

    def amp():
        return torch.autocast("cpu", dtype=compute)

    sliced = data.get("sliced")
    layer = _build(impl, case, master(data["weight"]), master(data["bias"]), group)
    _forward_backward(impl, layer, case, table, rank, low(data["x"]), low(data["grad_out"]), sliced, "mixed_",
                      result, amp)
    u = data["update"]
    update = {**u, "delta_weight": master(u["delta_weight"]), "delta_bias": master(u["delta_bias"]),
              "x": low(u["x"]), "grad_out": low(u["grad_out"])}
    _train_step(impl, layer, case, update, table, rank, result, sliced, prefix="mixed_", forward_context=amp)


def _partition(case: LayerCase, table: list[list[int]]) -> list[int]:
    """Each rank's share of the split dim, read from the shard shapes every rank reported
    (``torch.tensor_split``'s when they do not form a partition: the shards property says why)."""
    sharding = case.sharding  # each row of the table: [built, rows, cols] of the rank's weight shard
    return partition([int(row[1 + sharding.weight_dim]) for row in table], sharding.split_features(case), len(table))


def _rank_inputs(case: LayerCase, table, rank: int, x: torch.Tensor, grad_out: torch.Tensor,
                 sliced: str | None = None):
    """The input and upstream grad this rank feeds: the full ones, or its slices along the partition
    (a row layer's sliced input; a column layer's sharded output), in the case's layout. ``sliced``
    names the tensor the verdict already sent as this rank's slice alone."""
    if case.sharding.input_is_sliced(case) and sliced != "x":
        cols = _partition(case, table)
        x_in = x.narrow(-1, offsets(cols)[rank], cols[rank]).clone()
    else:
        x_in = x.clone()
    if case.sharding.output_is_sharded(case) and sliced != "grad_out":
        rows = _partition(case, table)
        g_in = grad_out.narrow(-1, offsets(rows)[rank], rows[rank]).clone()
    else:
        g_in = grad_out.clone()
    return laid_out(x_in, case.layout), laid_out(g_in, case.layout)


def _train_step(impl, layer, case: LayerCase, update: dict, table, rank: int, result: dict,
                sliced: str | None = None, prefix: str = "", forward_context=contextlib.nullcontext) -> None:
    """SGD (``torch.optim.SGD``, the grads just computed) on this rank's parameters (``impl.parameters``:
    the shards ``impl.shards`` returns, unless an adapter says otherwise), then this rank's slice of
    the delta (at world size >= 2 the only slice the verdict sends it) added to the shards in place; then forward and backward on the
    update's own input and upstream grad (the forward inside ``forward_context()``). The layer must compute from its
    shards as they are now. Results go to ``{prefix}updated_weight_shard``, ``{prefix}step_output``..."""
    optimizer = torch.optim.SGD(impl.parameters(layer), lr=update["lr"])
    optimizer.step()
    optimizer.zero_grad()
    w, b = impl.shards(layer)
    sizes = _partition(case, table)
    start, n = offsets(sizes)[rank], sizes[rank]
    dw, db = update["delta_weight"], update["delta_bias"]
    if not update.get("delta_sliced"):  # the whole delta (one rank); else the verdict sent this rank's slice
        dw = dw.narrow(case.sharding.weight_dim, start, n)
        db = db.narrow(0, start, n) if db is not None and case.sharding.bias_sharded else db
    with torch.no_grad():
        w.add_(dw)
        if b is not None and db is not None:
            b.add_(db)
    result[f"{prefix}updated_weight_shard"] = as_tensor(w, "the weight shard").detach().clone()
    result[f"{prefix}updated_bias_shard"] = None if b is None else as_tensor(b, "the bias shard").detach().clone()
    x_in, g_in = _rank_inputs(case, table, rank, update["x"], update["grad_out"], sliced)
    x_in.requires_grad_(True)
    with forward_context():
        output = as_tensor(impl.forward(layer, x_in), "the layer's output after the update")
    result[f"{prefix}step_output"] = output.detach().clone()
    if output.shape != g_in.shape:  # keep the ranks' backward collectives matched
        g_in = torch.zeros_like(output.detach())
    if output.requires_grad:
        output.backward(g_in)
    result[f"{prefix}step_input_grad"] = None if x_in.grad is None else x_in.grad.detach().clone()
    _grads(impl, layer, f"{prefix}step_", result)



def run(message: dict, impl) -> dict:
    """The ``run`` command: one layer example on the whole world."""
    case = LayerCase.from_dict(message["case"])
    data = message["data"]
    if message.get("sliced"):
        data = {**data, "sliced": message["sliced"]}
    for option in ("conversion", "mixed_precision"):
        if message.get(option):
            data = {**data, option: message[option]}
    return run_example(impl, case, data, dist.group.WORLD, message.get("stages"))


COMMANDS = {"run": run}
