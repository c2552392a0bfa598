"""A worker process: one rank of a persistent process group, running candidate code.

The verdict process (``tpconform.transport.harness``) starts one worker per rank, then sends it messages
in the ``tpconform.transport.wire`` format: ``describe`` (load an impl, report its name and capabilities)
and ``run`` (build the layer for one example, run forward and backward, send back plain tensors).
Everything the candidate does happens here; nothing of it is trusted by the verdict.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import os
import signal
import sys
import time
from datetime import timedelta
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from tpconform.impls.registry import ImplError, ensure_importable_root, load
from tpconform.transport import backends, rank_walls, sandbox, wire
from tpconform.transport.tp_groups import kept_sizes, tp_group
from tpconform.transport.worker_tools import error_text

_impls: dict = {}
_set_up: set = set()  # impl specs whose setup() ran in this process


def family_command(family: str, cmd: str) -> Optional[Callable[[dict, Any], dict]]:
    """The worker command ``cmd`` that the family ``family`` registers in its ``worker.py`` (``COMMANDS``),
    or ``None``. Families sit above the transport: found by name, never imported here by a static line."""
    if not family.isidentifier():
        return None
    try:
        module = importlib.import_module(f"tpconform.families.{family}.worker")
    except ModuleNotFoundError:
        return None
    return getattr(module, "COMMANDS", {}).get(cmd)


PROFILE_DIR = "TPCONFORM_PROFILE_DIR"  # set: each rank profiles its message loop into that folder (benchmarks/profile_example.py)


def _profiler():
    """A running ``cProfile.Profile`` when ``TPCONFORM_PROFILE_DIR`` names a folder, else ``None``."""
    if not os.environ.get(PROFILE_DIR):
        return None
    import cProfile  # only when profiling: the worker's start-up stays as it was

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _load(spec: str):
    if spec not in _impls:
        ensure_importable_root()
        _impls[spec] = load(spec)
    return _impls[spec]


def _probe(rank: int, group, device) -> dict[str, float]:
    """One all-reduce of ``rank + 1`` on the world (key "0") and on each TP sub-group the suite keeps (keyed by
    its size, sizes in order: every rank the same), then a barrier: what the verdict checks before it reuses
    a group every rank of which raised (``engine.runner``)."""
    sums = {}
    for key, g in [("0", group)] + [(str(t), tp_group(t)) for t in kept_sizes()]:
        token = torch.tensor([float(rank + 1)], device=device)
        dist.all_reduce(token, group=g)
        sums[key] = float(token.item())
    dist.barrier(group=group)
    return sums


def main(rank: int, world_size: int, store_port: int, conn, lifeline, stack_path: str, timeout_s: float,
         example_timeout_s: Optional[float] = None,
         store_host: str = "127.0.0.1", store_prefix: str = "", device_index: Optional[int] = None,
         capture_stderr: bool = False, walls: bool = False) -> None:
    """One rank: set up the process (``tpconform.transport.sandbox``), join the group, serve messages.

    ``stack_path`` receives every thread's stack on SIGUSR1 (what the verdict asks for on a hang
    or crash); ``stack_path + ".watchdog"`` receives them from faulthandler's own C thread shortly
    before ``example_timeout_s``, for a rank that ignores SIGUSR1 or holds the GIL. With
    ``capture_stderr``, the process's stderr (the backend's own messages before it aborts, a
    candidate's warnings) goes to ``stack_path + ".stderr"``, which the verdict reads when a rank dies.
    With ``walls`` (grading in the sandbox), the rank is walled off from the others by the kernel
    (``tpconform.transport.rank_walls``) while it is still one thread, before anything else starts."""
    sandbox.set_up(world_size, rank)
    watchdog_path = stack_path + ".watchdog"
    cleanup: tuple[str, ...] = (stack_path, watchdog_path)
    if capture_stderr:
        cleanup += (stack_path + ".stderr",)
        captured = os.open(cleanup[-1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(captured, 2)  # fd 2 itself: what C++ (Gloo, c10d) writes before an abort lands there too
        os.close(captured)
    stack_file = open(stack_path, "w")
    watchdog_file = open(watchdog_path, "w")
    if walls:  # before any thread (the lifeline's, the store's, the backend's) and any candidate code
        rank_walls.raise_walls(os.path.dirname(os.path.dirname(stack_path)))  # the layout of rank_walls.locked_layout
    sandbox.start_lifeline(lifeline, cleanup)
    if store_host == "127.0.0.1":  # a local group; under torchrun (tpconform.transport.torchrun_rank) the ranks may span nodes
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    watchdog_s = None if not example_timeout_s else max(example_timeout_s - 0.5, example_timeout_s * 0.8)
    store: dist.Store = dist.TCPStore(store_host, store_port, is_master=False, timeout=timedelta(seconds=timeout_s))
    if store_prefix:  # torchrun's store, shared with torch's own keys
        store = dist.PrefixStore(store_prefix, store)
    backend = backends.selected()  # gloo, or nccl with this rank on cuda:rank (see tpconform.transport.backends)
    device = backends.set_up_device(backend, rank if device_index is None else device_index)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    group = dist.group.WORLD
    # memory is bounded from outside this process, by what it holds resident (tpconform.transport.memory_watch)
    conn.send_bytes(wire.encode({"ready": rank}))
    profiler = _profiler()
    while True:
        try:
            message = backends.to_device(wire.decode(conn.recv_bytes()), device)
        except (EOFError, OSError):
            # the verdict is gone: leave as the lifeline would (files removed, descendants killed),
            # whichever of the two threads sees it first
            sandbox.die(cleanup)
        cmd = message["cmd"]
        if cmd == "stop":
            break
        started = time.perf_counter()
        if watchdog_s:
            faulthandler.dump_traceback_later(watchdog_s, file=watchdog_file)
        try:
            if cmd == "probe":  # the verdict asks whether the group still runs collectives in step (runner)
                reply: dict[str, Any] = {"ok": True, "sums": _probe(rank, group, device)}
            elif cmd == "describe":
                impl = _load(message["impl"])
                if message.get("setup") and message["impl"] not in _set_up:
                    impl.setup(group)  # the library's one-time set-up, under the load bound (Runner._group)
                    _set_up.add(message["impl"])
                reply = {"ok": True, "describe": impl.describe()}
            else:
                command = family_command(str(message.get("family", "")), cmd)
                if command is None:
                    reply = {"ok": False, "error": f"unknown command {cmd!r} of family {message.get('family')!r}"}
                else:
                    # a family the impl declares forward-only (capability backward=False) runs as inference
                    # does, under no_grad: the family workers then make no input require grad and run no
                    # backward (they read torch.is_grad_enabled())
                    with torch.no_grad() if message.get("forward_only") else contextlib.nullcontext():
                        reply = {"ok": True, "result": command(message, _load(message["impl"]))}
        except BaseException as exc:  # SystemExit, pytest's Skipped, ...: a failure like any other
            if isinstance(exc, ImplError):
                reply = {"ok": False, "impl_error": str(exc)}
            else:
                reply = {"ok": False, "error": error_text(exc)}
        reply["seconds"] = time.perf_counter() - started
        reply["seq"] = message.get("seq")
        try:
            conn.send_bytes(wire.encode(reply))
        except Exception as exc:  # the result holds something that cannot cross the wire
            conn.send_bytes(wire.encode({"ok": False, "error": f"result could not be sent: {exc}",
                                         "seq": message.get("seq")}))
        if watchdog_s:
            # after the reply, not before: cancelling joins faulthandler's watchdog thread, which must be
            # scheduled to exit (36 ms a message at load 90, on every example's critical path); the verdict
            # judges meanwhile. A dump it still writes (a reply sent in the last instant before the
            # watchdog's time) is of this example, and the next request marks the file's end before it is sent.
            faulthandler.cancel_dump_traceback_later()
        if profiler is not None:  # after every message: the verdict kills its ranks, it never stops them
            dump = os.path.join(os.environ[PROFILE_DIR], f"rank{rank}.pid{os.getpid()}.prof")
            profiler.dump_stats(dump + ".part")
            os.replace(dump + ".part", dump)  # whole: the verdict may kill this rank while it writes
            profiler.enable()  # dump_stats disabled it; the dump's own time stays out of the profile
    try:
        dist.destroy_process_group()
    except Exception:
        pass
    sys.stdout.flush()
    os._exit(0)
