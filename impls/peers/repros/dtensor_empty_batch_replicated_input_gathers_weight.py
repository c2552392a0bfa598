"""torch 2.13 DTensor: with an empty batch, a row-parallel nn.Linear fed a replicated input all-gathers its weight
where only activations should move (its cost model prices every activation redistribution at 0):
RowwiseParallel(input_layouts=Replicate()) (transformers' "rowwise_split_input" style) on nn.Linear(1, 1,
bias=False), 2 ranks, x of shape [0, 1] requiring grad: forward and backward run 4 all_gather_into_tensor (of the
weight's 1 element per rank), while the input, the output and their grads hold 0 elements. The values are right
(an empty output, a zero weight grad). dtensor_empty_batch_gathers_weight.py shows it with a sliced input."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    mesh = init_device_mesh("cpu", (world_size,))
    layer = parallelize_module(nn.Linear(1, 1, bias=False), mesh, RowwiseParallel(input_layouts=Replicate()))
    x = torch.randn(0, 1, requires_grad=True)
    with CommDebugMode() as comm:
        layer(x).sum().backward()
    counts = {str(k): v for k, v in comm.get_comm_counts().items() if v}
    gathers = {k: v for k, v in counts.items() if "gather" in k}
    return [f"expected no collective that moves the weight (the activations hold 0 elements), got {counts}"] if gathers else []
