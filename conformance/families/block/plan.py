"""The reference way to parallelise the suite's dense block (rank side: imported by impls, never by the
verdict): a torchtitan-style DTensor plan.

    parallelize_module(block, mesh, {
        "attention.wq": ColwiseParallel(), "attention.wk": ColwiseParallel(), "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(),
        "feed_forward.w1": ColwiseParallel(), "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(),
    })
    block.attention.n_heads //= p; block.attention.n_kv_heads //= p

Norms stay replicated (their inputs are replicated: no grad reduction needed without sequence
parallelism). A config the plan cannot express — query heads, kv heads (fewer kv heads than ranks
included: this plan does not replicate them) or the FFN width not divisible by the world size — is
refused here, before any forward, with one line saying why (:class:`PlanCannotExpress`).
"""

from __future__ import annotations

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

_meshes: dict = {}


class PlanCannotExpress(ValueError):
    """The config cannot be sharded by this plan (raised at parallelise time, on every rank alike)."""


def mesh_of(group) -> DeviceMesh:
    """The 1-D CPU mesh over ``group``, made once per group."""
    ranks = tuple(dist.get_process_group_ranks(group))
    if ranks not in _meshes:
        _meshes[ranks] = DeviceMesh.from_group(group, "cpu")
    return _meshes[ranks]


def plan() -> dict:
    """The module-name → style plan (torchtitan's Llama plan without sequence parallelism)."""
    return {
        "attention.wq": ColwiseParallel(), "attention.wk": ColwiseParallel(), "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(),
        "feed_forward.w1": ColwiseParallel(), "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(),
    }


def check_expressible(block, p: int) -> None:
    attn, ffn = block.attention, block.feed_forward.w1.out_features
    if attn.n_kv_heads < p:
        raise PlanCannotExpress(f"{attn.n_kv_heads} kv heads cannot be split over {p} ranks "
                                "(fewer kv heads than ranks; this plan does not replicate them)")
    for what, n in (("query heads", attn.n_heads), ("kv heads", attn.n_kv_heads), ("FFN width", ffn)):
        if n % p:
            raise PlanCannotExpress(f"{what} {n} not divisible by the tensor-parallel size {p}")


def localise_heads(block, p: int) -> None:
    """Each rank attends over its own heads: the local counts are the global ones over ``p``."""
    block.attention.n_heads //= p
    block.attention.n_kv_heads //= p


def parallelize_block(block, group, styles: dict | None = None, localise: bool = True):
    """Shard ``block`` over ``group`` with :func:`plan` (or ``styles``); refuse what it cannot express.
    (``styles``, ``localise``: for the seeded bugs that change one step of it.)"""
    p = dist.get_world_size(group)
    check_expressible(block, p)
    if p == 1:
        # nothing to shard; and DTensor (2.13) cannot view a 3-D input whose sharded dim has size 1 (an FFN of
        # width 1: "would remove or reshape sharded dimension 2"), which only a world of one rank meets
        return block
    parallelize_module(block, mesh_of(group), styles or plan())
    if localise:
        localise_heads(block, p)
    return block
