"""torch 2.13 DTensor: when a rank holds an empty shard (hidden width 1 on 2 ranks), the Colwise -> Rowwise
pair's forward all-gathers the weights instead of running its one all-reduce of the activations."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    mesh = init_device_mesh("cpu", (world_size,))
    up = parallelize_module(nn.Linear(1, 1), mesh, ColwiseParallel())  # hidden width 1: rank 1 holds none
    down = parallelize_module(nn.Linear(1, 1), mesh, RowwiseParallel())
    x = torch.randn(3, 1)
    with CommDebugMode() as comm:
        h = torch.relu(up(x))  # this rank's hidden slice, [3, 1] or [3, 0]: uneven, so its global shape is given
        down(DTensor.from_local(h, mesh, [Shard(-1)], shape=torch.Size([3, 1]), stride=(1, 1)))
    counts = {str(op).split(".")[-1]: n for op, n in comm.get_comm_counts().items()}
    if counts != {"all_reduce": 1}:
        return [f"expected the forward's collectives to be one all_reduce (of the [3, 1] output), got {counts}"]
    return []
