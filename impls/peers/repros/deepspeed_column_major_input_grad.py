"""DeepSpeed 0.19.8: LinearLayer (AutoTP's column layer, training mode) returns a rank-partial input grad
for a 2-D column-major input (``x = y.t()``): autograd hands its copy-to backward a non-contiguous grad,
which it all-reduces through a ``.contiguous()`` copy and then discards, returning the unreduced grad."""

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed.comm as ds_comm  # noqa: E402
import torch  # noqa: E402
from deepspeed.module_inject import layers as ds_layers  # noqa: E402
from torch import nn  # noqa: E402

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    if not ds_comm.is_initialized():
        ds_comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, verbose=False)
    ds_layers.set_autotp_mode(training=True)
    torch.manual_seed(0)
    dense = nn.Linear(4, 4, dtype=torch.float64)
    layer = nn.Linear(4, 4, dtype=torch.float64)
    layer.load_state_dict(dense.state_dict())
    layer = ds_layers.LinearLayer(layer, mp_group=torch.distributed.group.WORLD, gather_output=True)
    lines = []
    for what, make in (("contiguous [3, 4]", lambda y: y.clone()), ("column-major [3, 4] (x = y.t())", lambda y: y.t())):
        y = torch.randn(4, 3, dtype=torch.float64) if "column" in what else torch.randn(3, 4, dtype=torch.float64)
        x = make(y).requires_grad_(True)
        x_dense = x.detach().clone().requires_grad_(True)
        dense(x_dense).sum().backward()
        layer(x).sum().backward()
        if not torch.allclose(x.grad, x_dense.grad):
            lines.append(f"{what} input: expected input grad {x_dense.grad.tolist()} (nn.Linear), "
                         f"got {x.grad.tolist()} on rank {rank}")
    return lines
