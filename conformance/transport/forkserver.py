"""The forkserver every worker is started from (never ``fork``: a forked child can inherit a lock
held by the store's thread).

It preloads torch, its one-time lazy set-up and the worker loop
(:mod:`tpconform.transport.forkserver_init`): about 3 s of CPU, paid once per verdict process.
:func:`start_early` starts it before the verdict process imports torch itself, so the two imports
run side by side; this module imports nothing heavy, so calling it first is cheap.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
import threading
from multiprocessing import forkserver

PRELOAD = ["tpconform.transport.forkserver_init", "tpconform.transport.worker",
           "tpconform.families.linear.worker", "tpconform.impls.reference"]

_ctx = None
_main_lock = threading.RLock()  # groups start in threads of their own (GroupPool.start_in_background)


def context():
    """The ``forkserver`` start context, with :data:`PRELOAD` set."""
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(PRELOAD)
    return _ctx


@contextlib.contextmanager
def main_module_hidden():
    """Start workers without re-importing the parent's ``__main__`` (a user script, stdin, …); one
    thread at a time, so threads starting groups side by side restore what they saved in turn."""
    with _main_lock:
        main = sys.modules["__main__"]
        saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def start_early() -> None:
    """Start the forkserver now, without waiting for it: its preloading goes on while this process
    imports what it needs. The first worker started later waits for it as before. Whatever the
    forkserver must inherit (resource limits, environment) has to be set before this call."""
    context()
    with main_module_hidden():
        forkserver.ensure_running()
