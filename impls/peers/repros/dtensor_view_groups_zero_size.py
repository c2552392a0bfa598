"""torch 2.13 DTensor: view_groups (the view sharding rule nn.Linear's decomposition goes through) divides
by a zero-size dim, and builds a wrong dim map for another empty shape; as layers, nn.Linear fed an
empty batch of 2+ dims fails under ColwiseParallel / RowwiseParallel."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor._ops._view_ops import view_groups
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    lines = []
    try:
        view_groups([0, 4], [2, 0, 4])
    except ZeroDivisionError as exc:
        lines.append(f"view_groups([0, 4], [2, 0, 4]): expected a dim map, got ZeroDivisionError: {exc}")
    mapping = view_groups([0, 2, 0, 3], [0, 3])
    lines.append(f"view_groups([0, 2, 0, 3], [0, 3]) = {mapping}: flattens sizes 2 and 3 into a dim of size 3")
    mesh = init_device_mesh("cpu", (world_size,))
    for style, x in ((ColwiseParallel(), torch.randn(2, 0, 4)),
                     (RowwiseParallel(input_layouts=Replicate()), torch.randn(0, 2, 0, 3))):
        dense = nn.Linear(x.shape[-1], 1)
        expected = list(dense(x).shape)
        try:
            y = parallelize_module(nn.Linear(x.shape[-1], 1), mesh, style)(x)
            got = list(y.shape)
        except Exception as exc:
            got = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        if got != expected:
            lines.append(f"{type(style).__name__} nn.Linear({x.shape[-1]}, 1) on x of shape {list(x.shape)}: "
                         f"expected an output of shape {expected}, got {got}")
    return lines
