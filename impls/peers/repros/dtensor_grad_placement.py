"""torch 2.13 DTensor: when a rank holds an empty shard, the parameters' grads come back Replicate while
the parameters are Shard, and torch.optim.SGD.step() then raises."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    layer = parallelize_module(nn.Linear(1, 1), init_device_mesh("cpu", (world_size,)),
                               ColwiseParallel(output_layouts=Replicate()))
    layer(torch.randn(3, 1)).sum().backward()
    lines = []
    if layer.weight.grad.placements != layer.weight.placements:
        lines.append(f"expected weight.grad placed as the weight, {layer.weight.placements} (local "
                     f"{list(layer.weight.to_local().shape)}), got {layer.weight.grad.placements} (local "
                     f"{list(layer.weight.grad.to_local().shape)})")
    try:
        torch.optim.SGD(layer.parameters(), lr=0.1).step()
    except Exception as exc:
        lines.append(f"expected SGD.step() to update the shards, got {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return lines
