"""torch 2.13 DTensor: RowwiseParallel on nn.Embedding (the vocab-parallel embedding torch documents) shards the
table's rows, Shard(0), but its weight grad comes back Replicate: every rank holds the whole [vocab, dim] grad,
not its rows' grad."""

import copy

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    torch.manual_seed(0)
    dense = nn.Embedding(4, 3, dtype=torch.float64)
    table = parallelize_module(copy.deepcopy(dense), init_device_mesh("cpu", (world_size,)),
                               RowwiseParallel(input_layouts=Replicate()))
    ids = torch.tensor([0, 3, 3])
    dense(ids).sum().backward()
    table(ids).sum().backward()
    mine = torch.chunk(dense.weight.grad, world_size)[rank]  # this rank's rows of the dense grad
    weight, grad = table.weight, table.weight.grad
    lines = []
    if grad.placements != weight.placements or grad.to_local().shape != mine.shape:
        lines.append(f"expected weight.grad placed as the weight, {weight.placements} (local "
                     f"{list(weight.to_local().shape)}, this rank's rows of the dense grad), got "
                     f"{grad.placements} (local {list(grad.to_local().shape)}; equal to the whole dense grad: "
                     f"{torch.equal(grad.to_local(), dense.weight.grad)})")
    return lines
