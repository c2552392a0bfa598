"""torch 2.13 DTensor: a row-parallel nn.Linear without a bias, called under torch.inference_mode() on an empty
batch of 2+ dims, raises: RowwiseParallel(input_layouts=Replicate()) nn.Linear(2, 2, bias=False) on 2 ranks, x of
shape [0, 4, 2]: "mat1 and mat2 shapes cannot be multiplied (0x2 and 1x2)" - the whole input, never sliced to
the rank's Shard(-1), multiplied with its [2, 1] weight shard. The same call outside inference_mode runs, and so
does the layer with a bias under inference_mode; nn.Linear returns an empty [0, 4, 2] in every case."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    layer = parallelize_module(nn.Linear(2, 2, bias=False), init_device_mesh("cpu", (world_size,)),
                               RowwiseParallel(input_layouts=Replicate()))
    layer(torch.randn(0, 4, 2))  # outside inference_mode: runs
    try:
        with torch.inference_mode():
            out = layer(torch.randn(0, 4, 2))
    except RuntimeError as exc:
        return [f"under inference_mode, x [0, 4, 2] raised: RuntimeError: {str(exc).splitlines()[0]} "
                "(expected an empty [0, 4, 2] output, as nn.Linear returns, and as the same call outside it gives)"]
    return [] if tuple(out.shape) == (0, 4, 2) else [f"output shape {tuple(out.shape)}, expected (0, 4, 2)"]
