"""transformers 5.25.0 (torch 2.13.0 DTensor underneath): the "rowwise_split_input" style (RowwiseParallel with a
replicated input) on nn.Linear(2, 2), 2 ranks, loaded as transformers' weight loader does, fed an empty batch
of 2 dims, x of shape [0, 4, 2] requiring grad: the weight is Shard(1), local [2, 1], but weight.grad comes
back Replicate, local [2, 2] (the global values are right: zeros), so a rank's grad is not its shard's
(torch.optim.SGD.step() still runs here). An
empty batch of one dim, [0, 2], is placed right. It is torch's (dtensor_empty_batch_grad_placement.py shows
it with torch's RowwiseParallel alone); transformers' styles inherit it. The same layer built in bfloat16 and
converted with layer.to(torch.float32), fed x of shape [0, 0, 2, 2], shows it too: the conversion keeps the placement,
and the converted layer's weight grad is the whole [2, 2] again."""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
from transformers.integrations.tensor_parallel import ALL_PARALLEL_STYLES

WORLD_SIZE = 2


def _hf_layer(style_name: str, dense: nn.Linear, mesh) -> nn.Module:
    """apply_tensor_parallelism's shard_param, then the weight loader, then install_forward (one module)."""
    layer = nn.Linear(dense.in_features, dense.out_features, bias=dense.bias is not None, dtype=dense.weight.dtype)
    style = ALL_PARALLEL_STYLES[style_name]
    for name, full in list(dense.named_parameters()):
        style.shard_param(layer, name, mesh)
        ref = layer._parameters[name]
        local = DtensorShardOperation(ref).shard_tensor(full.detach())
        layer._parameters[name] = nn.Parameter(_dtensor_from_local_like(local, ref))
    return style.install_forward(layer, mesh)


def _misplaced(layer: nn.Module, x: torch.Tensor, what: str) -> list[str]:
    out = layer(x)
    out.backward(torch.ones_like(out))  # an upstream grad of the output's shape, as training code's loss gives
    lines = []
    weight, grad = layer.weight, layer.weight.grad
    if grad.placements != weight.placements:
        lines.append(f"{what}: expected weight.grad placed as the weight, {weight.placements} (local "
                     f"{list(weight.to_local().shape)}), got {grad.placements} (local {list(grad.to_local().shape)})")
    try:
        torch.optim.SGD(layer.parameters(), lr=0.1).step()
    except Exception as exc:
        lines.append(f"{what}: expected SGD.step() to update the shards, got {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0]}")
    return lines


def check(rank: int, world_size: int) -> list[str]:
    torch.manual_seed(0)
    mesh = DeviceMesh.from_group(dist.group.WORLD, "cpu")
    lines = _misplaced(_hf_layer("rowwise_split_input", nn.Linear(2, 2), mesh),
                       torch.randn(0, 4, 2, requires_grad=True), "x [0, 4, 2]")
    converted = _hf_layer("rowwise_split_input", nn.Linear(2, 2, bias=False, dtype=torch.bfloat16), mesh)
    converted.to(torch.float32)
    lines += _misplaced(converted, torch.randn(0, 0, 2, 2, requires_grad=True),
                        "built in bfloat16, layer.to(torch.float32), x [0, 0, 2, 2]")
    return lines
