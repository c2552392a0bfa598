"""torch 2.13 DTensor: with an empty batch, sharding propagation shards a batch dim and then cannot view it
(ColwiseParallel nn.Linear(2, 2) on x of shape [0, 0, 2]: forward works, backward raises)."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    layer = parallelize_module(nn.Linear(2, 2), init_device_mesh("cpu", (world_size,)), ColwiseParallel())
    x = torch.randn(0, 0, 2, requires_grad=True)
    try:
        layer(x).sum().backward()
    except Exception as exc:
        return [f"expected an empty input grad of shape [0, 0, 2] (as nn.Linear), got {type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}"]
    return []
