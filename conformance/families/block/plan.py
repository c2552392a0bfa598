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
parallelism). With sequence parallelism (``block.sequence_parallel``: each rank holds its sequence shard of
the block's input and output) the plan is torchtitan's: the norms ``SequenceParallel()`` (their weights
Replicate DTensors, whose grads DTensor all-reduces), each sublayer's input gathered
(``PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))``) and the row
projections' outputs reduce-scattered back to the sequence shard (``RowwiseParallel(output_layouts=Shard(1))``).
A config the plan cannot express — query heads, kv heads (fewer kv heads than ranks
included: this plan does not replicate them), the FFN width or, under sequence parallelism, the sequence
length (DTensor's ``from_local`` assumes equal shards) not divisible by the world size — is
refused here, before any forward, with one line saying why (:class:`PlanCannotExpress`).
"""

from __future__ import annotations

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

_meshes: dict = {}


class PlanCannotExpress(ValueError):
    """The config cannot be sharded by this plan (raised at parallelise time, on every rank alike)."""


def mesh_of(group) -> DeviceMesh:
    """The 1-D CPU mesh over ``group``, made once per group."""
    ranks = tuple(dist.get_process_group_ranks(group))
    if ranks not in _meshes:
        _meshes[ranks] = DeviceMesh.from_group(group, "cpu")
    return _meshes[ranks]


def plan(sequence_parallel: bool = False) -> dict:
    """The module-name → style plan (torchtitan's Llama plan, with or without sequence parallelism)."""
    if not sequence_parallel:
        return {
            "attention.wq": ColwiseParallel(), "attention.wk": ColwiseParallel(), "attention.wv": ColwiseParallel(),
            "attention.wo": RowwiseParallel(),
            "feed_forward.w1": ColwiseParallel(), "feed_forward.w3": ColwiseParallel(),
            "feed_forward.w2": RowwiseParallel(),
        }
    return {
        **sequence_parallel_norms(),
        **gathered_inputs(),
        "attention.wq": ColwiseParallel(), "attention.wk": ColwiseParallel(), "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
        "feed_forward.w1": ColwiseParallel(), "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
    }


def sequence_parallel_norms() -> dict:
    """The norms on the sequence shard, their weights Replicate DTensors (grads all-reduced by DTensor)."""
    return {"attention_norm": SequenceParallel(), "ffn_norm": SequenceParallel()}


def gathered_inputs() -> dict:
    """Each sublayer's input all-gathered from the sequence shards (a plain tensor is taken as its shard)."""
    return {name: PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))
            for name in ("attention", "feed_forward")}


def check_expressible(block, p: int) -> None:
    attn, ffn = block.attention, block.feed_forward.w1.out_features
    if attn.n_kv_heads < p:
        raise PlanCannotExpress(f"{attn.n_kv_heads} kv heads cannot be split over {p} ranks "
                                "(fewer kv heads than ranks; this plan does not replicate them)")
    for what, n in (("query heads", attn.n_heads), ("kv heads", attn.n_kv_heads), ("FFN width", ffn)):
        if n % p:
            raise PlanCannotExpress(f"{what} {n} not divisible by the tensor-parallel size {p}")
    seq = getattr(block, "seq_len", None)
    if getattr(block, "sequence_parallel", False) and seq is not None and seq % p:
        raise PlanCannotExpress(f"sequence length {seq} not divisible by the tensor-parallel size {p} "
                                "(sequence parallelism shards it evenly)")


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
    parallelize_module(block, mesh_of(group), styles or plan(getattr(block, "sequence_parallel", False)))
    if localise:
        localise_heads(block, p)
    return block
