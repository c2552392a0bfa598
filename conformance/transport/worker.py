"""A worker process: one rank of a persistent process group, running candidate code.

The verdict process (``conformance.transport.harness``) starts one worker per rank, then sends it messages
in the ``conformance.transport.wire`` format: ``describe`` (load an impl, report its name and capabilities)
and ``run`` (build the layer for one example, run forward and backward, send back plain tensors).
Everything the candidate does happens here; nothing of it is trusted by the verdict.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import time
import traceback
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from conformance.spec.cases import STAGES, LayerCase, partition
from conformance.transport import sandbox, wire

_impls: dict = {}
_set_up: set = set()  # impl specs whose setup() ran in this process


def _load(spec: str):
    if spec not in _impls:
        from impls.registry import ensure_importable_root, load

        ensure_importable_root()
        _impls[spec] = load(spec)
    return _impls[spec]


def _error_text(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}\n" + "".join(tb[-6:])


def _exchange(values: list[int], group) -> list[list[int]]:
    """A harness all-gather of a few ints (status and shard shapes) among the ranks."""
    t = torch.tensor(values, dtype=torch.int64)
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t, group=group)
    return [o.tolist() for o in out]


def _offsets(sizes: list[int]) -> list[int]:
    return [sum(sizes[:r]) for r in range(len(sizes))]


def _noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values, laid out with a stride of 2 in the last dim."""
    wide = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype)
    view = wide[..., ::2]
    view.copy_(t)
    return view


def laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in a given memory layout (``conformance.spec.cases.LAYOUTS``); a layout that means
    nothing for ``t``'s dims gives a contiguous copy. ``expanded`` assumes ``t``'s values repeat
    along dim 0 (``cases.make_tensors`` makes them so) and gives a stride-0 view of its first row."""
    if layout == "strided":
        return _noncontiguous(t)
    if layout == "narrowed":
        wide = torch.zeros(*t.shape[:-1], t.shape[-1] + 2, dtype=t.dtype, device=t.device)
        view = wide.narrow(-1, 1, t.shape[-1])
        view.copy_(t)
        return view
    if layout == "offset":
        buffer = torch.zeros(t.numel() + 3, dtype=t.dtype, device=t.device)
        view = buffer[3:].view(t.shape)
        view.copy_(t)
        return view
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "batch_permuted" and t.dim() >= 3:
        order = [*reversed(range(t.dim() - 1)), t.dim() - 1]  # its own inverse
        return t.permute(order).contiguous().permute(order)
    if layout == "expanded" and t.dim() >= 2 and t.shape[0] > 0:
        return t.narrow(0, 0, 1).clone().expand(t.shape)
    return t.clone()


def _as_tensor(value, what: str):
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        value = value[0]  # some libraries return (output, bias)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} is a {type(value).__name__}, not a tensor")
    return value


class _CollectiveVolume(TorchDispatchMode):
    """Counts the floating-point elements this rank puts into collectives (c10d and functional
    collectives, forward and backward) while active: what it sends, not what it receives."""

    # ops whose first argument is the output buffer; the rank's contribution is the second
    _OUTPUT_FIRST = {"allgather_", "allgather_coalesced_", "allgather_into_tensor_coalesced_", "_allgather_base_",
                     "reduce_scatter_", "_reduce_scatter_base_", "reduce_scatter_tensor_coalesced_", "alltoall_",
                     "alltoall_base_", "gather_", "scatter_"}
    _RECEIVE_ONLY = {"recv_", "recv_any_source_", "barrier", "monitored_barrier_", "wait_tensor",
                     "_wrap_tensor_autograd"}  # not collectives: a wait, a wrapper of a result

    # op -> None (not a collective), or (which argument holds what the rank sends, the op's name)
    _kinds: dict = {}

    def __init__(self):
        super().__init__()
        self.elements = 0
        self.calls: list[str] = []

    @classmethod
    def _kind(cls, func):
        if func not in cls._kinds:
            name = func.name().split("::")[-1].split(".")[0]
            kind = None
            if func.namespace in ("c10d", "_c10d_functional", "c10d_functional") and name not in cls._RECEIVE_ONLY:
                kind = (1 if name in cls._OUTPUT_FIRST else 0, name)
            cls._kinds[func] = kind
        return cls._kinds[func]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(t not in (torch.Tensor, torch.nn.Parameter) and not t.__module__.startswith("torch._subclasses")
               for t in types):
            # a tensor subclass (DTensor) first: it desugars into plain ops, collectives included,
            # which come back through this mode (modes otherwise run before subclasses and miss them)
            return NotImplemented
        kind = self._kind(func)
        if kind is not None:
            sent_at, name = kind
            sent = args[sent_at] if len(args) > sent_at else (args[0] if args else None)
            n = sum(t.numel() for t in tree_leaves(sent) if isinstance(t, torch.Tensor) and t.is_floating_point())
            self.elements += n
            self.calls.append(f"{name}({n})")
        return func(*args, **(kwargs or {}))


def run_example(impl, case: LayerCase, data: dict, group, stages=STAGES) -> dict:
    """Build the layer, report its shards, then run the ``stages`` asked for (all by default; a
    test of one property asks only for those it reads: see ``conformance.families.linear.properties.NEEDS``)."""
    stages = set(STAGES if stages is None else stages)
    rank = dist.get_rank(group)
    weight, bias, x, grad_out = data["weight"], data["bias"], data["x"], data["grad_out"]
    result: dict = {"rank": rank}

    # 1. build; every rank joins the status exchange, even when its build raised
    try:
        if case.kind == "column":
            layer = impl.column(weight.clone(), None if bias is None else bias.clone(),
                                gather_output=case.gather_output, group=group)
        else:
            layer = impl.row(weight.clone(), None if bias is None else bias.clone(),
                             input_is_parallel=case.input_is_parallel, group=group)
        w_shard, b_shard = impl.shards(layer)
        w_shard = _as_tensor(w_shard, "the weight shard")
        shape = list(w_shard.shape) if w_shard.dim() == 2 else [-1, -1]
        status = [1, *shape]
        result["weight_shard"] = w_shard.detach().clone()
        result["bias_shard"] = None if b_shard is None else _as_tensor(b_shard, "the bias shard").detach().clone()
    except Exception as exc:
        status = [0, -1, -1]
        result["construct_error"] = _error_text(exc)
    table = _exchange(status, group)
    if any(row[0] == 0 for row in table):
        result["construct_failed_ranks"] = [r for r, row in enumerate(table) if row[0] == 0]
        return result

    if not stages:
        return result

    # 2. the input this rank feeds: full, or its slice along the partition its weight implies
    sliced = data.get("sliced")  # the verdict sent only this rank's slice of "x" or "grad_out" (runner.run)
    x_in, g_in = _rank_inputs(case, table, rank, x, grad_out, sliced)
    x_sent, g_sent = x_in.detach().clone(), g_in.detach().clone()  # contiguous copies: the values
    backward = bool(stages & {"backward", "second_call", "collective_volume", "train_step"})
    x_in.requires_grad_(backward)

    # 3. forward (and backward), counting what this rank sends through collectives when asked to
    with _CollectiveVolume() if "collective_volume" in stages else contextlib.nullcontext() as volume:
        output = _as_tensor(impl.forward(layer, x_in), "the layer's output")
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
    if not backward:
        return result
    result["input_grad"] = None if x_in.grad is None else x_in.grad.detach().clone()
    w_grad, b_grad = impl.shard_grads(layer)
    result["weight_grad"] = None if w_grad is None else _as_tensor(w_grad, "the weight grad").detach().clone()
    result["bias_grad"] = None if b_grad is None else _as_tensor(b_grad, "the bias grad").detach().clone()
    result["grad_modified"] = not torch.equal(g_in, g_sent)

    # 4. a second call, on the negated input: nothing from the first call may leak into it
    if "second_call" in stages:
        with torch.no_grad():
            x_again = laid_out(-x_sent, case.layout)
            again = _as_tensor(impl.forward(layer, x_again), "the second call's output")
        result["second_output"] = again.detach().clone()

    # 5. a training step on the shards, then forward and backward again (conformance.spec.cases.UpdateTensors)
    #    (its failure is its own: what the earlier stages found stands; no harness collective follows,
    #    so a rank that raised alone leaves the others waiting in the layer's collective, a hang as before)
    if "train_step" in stages:
        try:
            _train_step(impl, layer, case, data["update"], table, rank, result, data.get("sliced"))
        except Exception as exc:
            result["train_step_error"] = _error_text(exc)
    return result


def _partition(case: LayerCase, table: list[list[int]]) -> list[int]:
    """Each rank's share of the split dim, read from the shard shapes every rank reported
    (``torch.tensor_split``'s when they do not form a partition: the shards property says why)."""
    column = case.kind == "column"
    return partition([int(row[1] if column else row[2]) for row in table],
                     case.out_features if column else case.in_features, len(table))


def _rank_inputs(case: LayerCase, table, rank: int, x: torch.Tensor, grad_out: torch.Tensor,
                 sliced: str | None = None):
    """The input and upstream grad this rank feeds: the full ones, or its slices along the partition
    (a row layer's sliced input; a column layer's sharded output), in the case's layout. ``sliced``
    names the tensor the verdict already sent as this rank's slice alone."""
    if case.kind == "row" and case.input_is_parallel and sliced != "x":
        cols = _partition(case, table)
        x_in = x.narrow(-1, _offsets(cols)[rank], cols[rank]).clone()
    else:
        x_in = x.clone()
    if case.kind == "column" and not case.gather_output and sliced != "grad_out":
        rows = _partition(case, table)
        g_in = grad_out.narrow(-1, _offsets(rows)[rank], rows[rank]).clone()
    else:
        g_in = grad_out.clone()
    return laid_out(x_in, case.layout), laid_out(g_in, case.layout)


def _train_step(impl, layer, case: LayerCase, update: dict, table, rank: int, result: dict,
                sliced: str | None = None) -> None:
    """SGD (``torch.optim.SGD``, the grads just computed) on this rank's parameters (``impl.parameters``:
    the shards ``impl.shards`` returns, unless an adapter says otherwise), then this rank's slice of
    the delta added to the shards in place; then forward and backward on the
    update's own input and upstream grad. The layer must compute from its shards as they are now."""
    optimizer = torch.optim.SGD(impl.parameters(layer), lr=update["lr"])
    optimizer.step()
    optimizer.zero_grad()
    w, b = impl.shards(layer)
    sizes = _partition(case, table)
    start, n = _offsets(sizes)[rank], sizes[rank]
    dw, db = update["delta_weight"], update["delta_bias"]
    with torch.no_grad():
        w.add_(dw.narrow(0, start, n) if case.kind == "column" else dw.narrow(1, start, n))
        if b is not None and db is not None:
            b.add_(db.narrow(0, start, n) if case.kind == "column" else db)
    result["updated_weight_shard"] = _as_tensor(w, "the weight shard").detach().clone()
    result["updated_bias_shard"] = None if b is None else _as_tensor(b, "the bias shard").detach().clone()
    x_in, g_in = _rank_inputs(case, table, rank, update["x"], update["grad_out"], sliced)
    x_in.requires_grad_(True)
    output = _as_tensor(impl.forward(layer, x_in), "the layer's output after the update")
    result["step_output"] = output.detach().clone()
    if output.shape != g_in.shape:  # keep the ranks' backward collectives matched
        g_in = torch.zeros_like(output.detach())
    if output.requires_grad:
        output.backward(g_in)
    result["step_input_grad"] = None if x_in.grad is None else x_in.grad.detach().clone()
    w_grad, b_grad = impl.shard_grads(layer)
    result["step_weight_grad"] = None if w_grad is None else _as_tensor(w_grad, "the weight grad").detach().clone()
    result["step_bias_grad"] = None if b_grad is None else _as_tensor(b_grad, "the bias grad").detach().clone()


def _extra_commands() -> dict:
    """Commands beyond one layer on the whole world (TP sub-groups, compositions, primitives)."""
    from conformance.families.worker_commands import COMMANDS

    return COMMANDS


def main(rank: int, world_size: int, store_port: int, conn, lifeline, stack_path: str, timeout_s: float,
         example_timeout_s: Optional[float] = None,
         store_host: str = "127.0.0.1", store_prefix: str = "", device_index: Optional[int] = None) -> None:
    """One rank: set up the process (``conformance.transport.sandbox``), join the group, serve messages.

    ``stack_path`` receives every thread's stack on SIGUSR1 (what the verdict asks for on a hang
    or crash); ``stack_path + ".watchdog"`` receives them from faulthandler's own C thread shortly
    before ``example_timeout_s``, for a rank that ignores SIGUSR1 or holds the GIL."""
    sandbox.set_up(world_size, rank)
    watchdog_path = stack_path + ".watchdog"
    sandbox.start_lifeline(lifeline, (stack_path, watchdog_path))
    if store_host == "127.0.0.1":  # a local group; under torchrun (conformance.transport.torchrun_rank) the ranks may span nodes
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    stack_file = open(stack_path, "w")
    watchdog_file = open(watchdog_path, "w")
    faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    watchdog_s = None if not example_timeout_s else max(example_timeout_s - 0.5, example_timeout_s * 0.8)
    store: dist.Store = dist.TCPStore(store_host, store_port, is_master=False, timeout=timedelta(seconds=timeout_s))
    if store_prefix:  # torchrun's store, shared with torch's own keys
        store = dist.PrefixStore(store_prefix, store)
    from conformance.transport import backends
    backend = backends.selected()  # gloo, or nccl with this rank on cuda:rank (see conformance.transport.backends)
    device = backends.set_up_device(backend, rank if device_index is None else device_index)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    group = dist.group.WORLD
    # memory is bounded from outside this process, by what it holds resident (conformance.transport.memory_watch)
    conn.send_bytes(wire.encode({"ready": rank}))
    while True:
        try:
            message = backends.to_device(wire.decode(conn.recv_bytes()), device)
        except (EOFError, OSError):
            # the verdict is gone: leave as the lifeline would (files removed, descendants killed),
            # whichever of the two threads sees it first
            sandbox.die((stack_path, watchdog_path))
        cmd = message["cmd"]
        if cmd == "stop":
            break
        started = time.perf_counter()
        if watchdog_s:
            faulthandler.dump_traceback_later(watchdog_s, file=watchdog_file)
        try:
            if cmd == "describe":
                impl = _load(message["impl"])
                if message.get("setup") and message["impl"] not in _set_up:
                    impl.setup(group)  # the library's one-time set-up, under the load bound (Runner._group)
                    _set_up.add(message["impl"])
                reply = {"ok": True, "describe": impl.describe()}
            elif cmd == "run":
                impl = _load(message["impl"])
                case = LayerCase.from_dict(message["case"])
                data = message["data"]
                if message.get("sliced"):
                    data = {**data, "sliced": message["sliced"]}
                reply = {"ok": True, "result": run_example(impl, case, data, group, message.get("stages"))}
            elif cmd in _extra_commands():
                reply = {"ok": True, "result": _extra_commands()[cmd](message, _load(message["impl"]))}
            else:
                reply = {"ok": False, "error": f"unknown command {cmd!r}"}
        except BaseException as exc:  # SystemExit, pytest's Skipped, ...: a failure like any other
            from impls.registry import ImplError

            if isinstance(exc, ImplError):
                reply = {"ok": False, "impl_error": str(exc)}
            else:
                reply = {"ok": False, "error": _error_text(exc)}
        if watchdog_s:
            faulthandler.cancel_dump_traceback_later()
        reply["seconds"] = time.perf_counter() - started
        reply["seq"] = message.get("seq")
        try:
            conn.send_bytes(wire.encode(reply))
        except Exception as exc:  # the result holds something that cannot cross the wire
            conn.send_bytes(wire.encode({"ok": False, "error": f"result could not be sent: {exc}",
                                         "seq": message.get("seq")}))
    try:
        dist.destroy_process_group()
    except Exception:
        pass
    sys.stdout.flush()
    os._exit(0)
