"""torch 2.13 DTensor: a row-parallel nn.Linear fed an empty batch of 2+ dims gets its weight grad placed
Replicate while the weight is Shard(1): RowwiseParallel(input_layouts=Replicate()) nn.Linear(2, 2) on 2 ranks,
x of shape [0, 4, 2] requiring grad: the weight is Shard(1), local [2, 1], but weight.grad is Replicate, local
[2, 2] (the global values are right: zeros): a rank's grad is not its shard's (torch.optim.SGD.step() still
runs here, unlike with an empty shard). The same layer fed an empty batch of one dim, [0, 2], is placed
right. (With an empty batch every redistribution costs 0, and the sharding propagation of the grad's matmul
picks a Replicate strategy; dtensor-grad-placement-not-param-placement is the same placement bug with an empty
shard instead of an empty batch.)"""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    layer = parallelize_module(nn.Linear(2, 2), init_device_mesh("cpu", (world_size,)),
                               RowwiseParallel(input_layouts=Replicate()))
    layer(torch.randn(0, 4, 2, requires_grad=True)).sum().backward()
    lines = []
    weight, grad = layer.weight, layer.weight.grad
    if grad.placements != weight.placements:
        lines.append(f"expected weight.grad placed as the weight, {weight.placements} (local "
                     f"{list(weight.to_local().shape)}), got {grad.placements} (local {list(grad.to_local().shape)})")
    try:
        torch.optim.SGD(layer.parameters(), lr=0.1).step()
    except Exception as exc:
        lines.append(f"expected SGD.step() to update the shards, got {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return lines
