"""The plugin's side of torchrun mode (``--tp-torchrun``; the transport: ``transport/torchrun_mode.py``):
the world sizes a run draws, and the pool of the torchrun world."""

from __future__ import annotations

from typing import Optional

import pytest
from tpconform.spec.options import DEFAULT_WORLD_SIZES
from tpconform.transport.contract import GroupFailure
from tpconform.transport.torchrun_mode import StorePool, parse_address


def configure(config, asked_sizes: list[int]) -> tuple[list[int], Optional[str], str]:
    """``pytest_configure`` in torchrun mode: draw only the torchrun world size. Returns the world
    sizes to draw, why every suite test is skipped (``None``: they run), and the header's note."""
    world = config.getoption("tp_torchrun_world_size")
    if not world or world < 1:
        raise pytest.UsageError("--tp-torchrun needs --tp-torchrun-world-size (set by python -m tpconform torchrun)")
    try:
        parse_address(config.getoption("tp_torchrun"))
    except ValueError as exc:
        raise pytest.UsageError(f"--tp-torchrun: {exc}") from None
    asked = config.getoption("world_sizes")
    skip = None  # each node's GPUs serve its own ranks: the local count does not matter
    if asked != DEFAULT_WORLD_SIZES and world not in asked_sizes:  # the default means "the torchrun world"
        skip = (f"the torchrun world has {world} ranks, and --world-sizes={asked} does not "
                "include it (under torchrun every example uses the whole world)")
    return [world], skip, f"torchrun, {world} ranks"


def pool_for(config) -> StorePool:
    """The pool of the torchrun world, connected: every rank has started (or one clear line)."""
    host, port = parse_address(config.getoption("tp_torchrun"))
    pool = StorePool(host, port, config.getoption("tp_torchrun_prefix"), config.getoption("tp_torchrun_world_size"),
                     config.getoption("tp_timeout"))
    try:
        pool.get(pool.world_size)
    except GroupFailure as exc:
        pool.close()
        raise pytest.UsageError(f"torchrun: {str(exc).splitlines()[0]}") from None
    return pool
