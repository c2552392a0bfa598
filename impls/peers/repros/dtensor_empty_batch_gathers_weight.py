"""torch 2.13 DTensor: with an empty batch, RowwiseParallel may all-gather the weight (its cost model
prices every activation redistribution at 0) where only activations should move."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    mesh = init_device_mesh("cpu", (world_size,))
    layer = parallelize_module(nn.Linear(1, 1, bias=False), mesh, RowwiseParallel())
    local = torch.randn(0, 1 if rank == 0 else 0, requires_grad=True)  # rank 0 holds the one input column
    x = DTensor.from_local(local, mesh, [Shard(-1)], shape=torch.Size([0, 1]), stride=(1, 1))
    with CommDebugMode() as comm:
        layer(x).sum().backward()
    counts = {str(k): v for k, v in comm.get_comm_counts().items() if v}
    gathers = {k: v for k, v in counts.items() if "gather" in k}
    return [f"expected no collective that moves the weight (the activations hold 0 elements), got {counts}"] if gathers else []
