"""torch 2.13 DTensor: when the sharded feature dim has size 1, the view nn.Linear's decomposition does is
refused ('would remove or reshape sharded dimension')."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    torch.manual_seed(0)
    dense = nn.Linear(1, 22).double()
    x = torch.randn(4, 4, 1, 1, dtype=torch.float64)
    expected = dense(x)
    layer = nn.Linear(1, 22).double()
    layer.load_state_dict(dense.state_dict())
    layer = parallelize_module(layer, init_device_mesh("cpu", (world_size,)), RowwiseParallel())
    try:
        y = layer(x)  # one rank: its Shard(-1) slice of x is all of x
    except Exception as exc:
        return [f"expected an output of shape {list(expected.shape)}, got {type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}"]
    return [] if torch.allclose(y, expected) else [f"expected {expected.tolist()}, got {y.tolist()}"]
