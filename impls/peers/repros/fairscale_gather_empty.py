"""fairscale 0.4.13: gather_from_model_parallel_region's backward fails on empty (width-0) slices."""

import contextlib
import io

import torch
from fairscale.nn.model_parallel import initialize as mpu
from fairscale.nn.model_parallel.mappings import gather_from_model_parallel_region

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    with contextlib.redirect_stdout(io.StringIO()):
        mpu.initialize_model_parallel(world_size)
    x = torch.zeros(3, 0, requires_grad=True)  # every rank's slice is empty: the gathered output is [3, 0]
    y = gather_from_model_parallel_region(x)
    try:
        y.backward(torch.zeros_like(y))
    except IndexError as exc:
        return [f"expected the input grad of shape [3, 0], got IndexError: {exc} (in its backward's split)"]
    return []
