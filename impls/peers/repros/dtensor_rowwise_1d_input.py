"""torch 2.13 DTensor: a 1-D input (no batch dim) with a stride (a slice such as t[::2]), which nn.Linear
accepts, fails in RowwiseParallel's backward ('dimensionality of sizes (2) must match dimensionality of
strides (1)')."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    torch.manual_seed(0)
    dense = nn.Linear(2, 3).double()
    x = torch.randn(4, dtype=torch.float64)[::2].detach().requires_grad_(True)  # shape [2], stride (2,)
    dense(x).sum().backward()
    expected = x.grad.clone()
    x.grad = None
    layer = nn.Linear(2, 3).double()
    layer.load_state_dict(dense.state_dict())
    layer = parallelize_module(layer, init_device_mesh("cpu", (world_size,)), RowwiseParallel(input_layouts=Replicate()))
    try:
        layer(x).sum().backward()
    except Exception as exc:
        return [f"expected the input grad {expected.tolist()} (nn.Linear on x of shape [2], stride (2,)), got "
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}"]
    return [] if torch.allclose(x.grad, expected) else [f"expected input grad {expected.tolist()}, got {x.grad.tolist()}"]
