"""Imported by the forkserver only (its preload list), before it forks any worker:

- pay torch's one-time lazy set-up once (``torch._dynamo``, which the first ``autograd.Function``
  call imports: 1.5-3 s, longer than a short ``--tp-timeout``), with a tiny forward/backward per
  dtype on one thread — no thread pool is started, so forking stays safe;
- import what every worker would otherwise import on its own, each of the 36 ranks of a default
  run: every family's worker commands, the impl registry's names (it reads every installed
  distribution's metadata), so a rank starts with them;
- remove the forkserver's socket folder when it exits, even when the verdict process that
  started it was killed and could not clean up.
"""

import gc
import importlib.util
import pkgutil

import torch
import torch._dynamo  # noqa: F401  (imported for its side effect: the lazy import, done once)
from tpconform.spec.dtypes import DTYPES
from tpconform.transport.sandbox import remove_socket_dir_at_exit


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g


def _warm_up() -> None:
    torch.set_num_threads(1)
    for dtype in (getattr(torch, name) for name in DTYPES):
        x = torch.ones(2, 3, dtype=dtype, requires_grad=True)
        w = torch.ones(4, 3, dtype=dtype, requires_grad=True)
        torch.nn.functional.linear(_Identity.apply(x), w, w[:, 0]).sum().backward()


def _preload_workers() -> None:
    """Best effort: whatever fails here fails again, and is reported, where a worker meets it."""
    from tpconform.impls.registry import available
    from tpconform.transport.worker import family_command

    try:
        families = importlib.util.find_spec("tpconform.families")  # found by name: families sit above the transport
        for found in pkgutil.iter_modules(families.submodule_search_locations if families else []):
            if found.ispkg:
                family_command(found.name, "")  # imports its worker.py
        available()
    except Exception:  # noqa: BLE001 - see the doc line
        pass


_warm_up()
_preload_workers()
remove_socket_dir_at_exit()
# every worker is forked from here: what the preload built (torch, its registrations) out of the collector's
# reach, so a worker's collections never walk it (nor write to its pages: they stay shared with this process)
gc.freeze()
