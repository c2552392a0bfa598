"""Bug: the builder's block is right but its name map swaps the gate and up projections: the dense
``feed_forward.w1`` (gate) is said to be held by its ``w3`` (up) layer and the other way round, so the
suite (and a checkpoint converter reading the same map) pairs each with the other's shard.

Exposed by: any block whose gate and up grads differ, at any world size."""

from tpconform.impls.reference import ReferenceImpl
from tpconform.impls.tp_block import build_tp_block


class Impl(ReferenceImpl):
    name = "bug-block-builder-gate-up-swapped"

    def build_tp_block(self, block, group):
        module, name_map = build_tp_block(block, group)
        for suffix in ("weight", "bias"):
            gate, up = f"feed_forward.w1.{suffix}", f"feed_forward.w3.{suffix}"
            if gate in name_map:
                name_map[gate], name_map[up] = name_map[up], name_map[gate]
        return module, name_map
