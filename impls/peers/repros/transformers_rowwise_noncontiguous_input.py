"""transformers 5.25.0: RowwiseParallel (the "rowwise" style: input this rank's slice of the last dim) in training
mode wraps a plain local input with DTensor.from_local(local, mesh, [Shard(-1)], shape=..., stride=<the
contiguous stride of the global shape>) (TensorParallelLayer._from_local_last_dim_shard). For a non-contiguous
local input (batch dims permuted in memory, the last two dims transposed, or the first batch dim expanded
from size 1: stride 0) that stride misdescribes the tensor, and DTensor's view of it fails: RuntimeError 'view size is not compatible with input tensor's size and
stride'. nn.Linear, and torch's own RowwiseParallel fed the same local input, are exact. The sequence-parallel row
style (RowwiseParallel(output_layouts=Shard(0))) wraps its input the same way and fails the same way."""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Shard
from torch.distributed.tensor.parallel import RowwiseParallel as TorchRowwise
from torch.distributed.tensor.parallel import parallelize_module
from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
from transformers.integrations.tensor_parallel import RowwiseParallel

WORLD_SIZE = 2


def _hf_rowwise(dense, mesh, style=None):
    layer = nn.Linear(dense.in_features, dense.out_features, dtype=dense.weight.dtype)
    style = style or RowwiseParallel()
    for name, full in list(dense.named_parameters()):  # apply_tensor_parallelism's shard_param, then the loader
        style.shard_param(layer, name, mesh)
        ref = layer._parameters[name]
        local = DtensorShardOperation(ref).shard_tensor(full.detach())
        layer._parameters[name] = nn.Parameter(_dtensor_from_local_like(local, ref))
    return style.install_forward(layer, mesh)


def _leaf(local):
    """A tensor requiring grad in ``local``'s layout (an expanded one: a leaf of size 1, expanded)."""
    if local.stride(0) == 0:
        return local[:1].clone().requires_grad_().expand(local.shape)
    return local.clone().requires_grad_()


def check(rank: int, world_size: int) -> list[str]:
    mesh = DeviceMesh.from_group(dist.group.WORLD, "cpu")
    torch.manual_seed(0)
    dense = nn.Linear(2 * world_size, 3, dtype=torch.float64)
    x = torch.randn(1, 2, 2 * world_size, dtype=torch.float64).expand(3, 2, 2 * world_size).contiguous()
    expected = dense(x)
    mine = x[..., 2 * rank:2 * rank + 2]
    inputs = {"batch dims permuted in memory": mine.permute(1, 0, 2).contiguous().permute(1, 0, 2),
              "last two dims transposed in memory": mine.transpose(-1, -2).contiguous().transpose(-1, -2),
              "first batch dim expanded from size 1 (stride 0)": mine[:1].expand(3, 2, 2)}
    lines = []
    for what, local in inputs.items():
        try:
            y = _hf_rowwise(dense, mesh)(_leaf(local))
            if not torch.allclose(y, expected):
                lines.append(f"transformers rowwise, {what}: wrong output, max error {(y - expected).abs().max():g}")
        except RuntimeError as exc:
            torch_layer = parallelize_module(nn.Linear(2 * world_size, 3, dtype=torch.float64), mesh, TorchRowwise())
            with torch.no_grad():
                torch_layer.weight.to_local().copy_(dense.weight[:, 2 * rank:2 * rank + 2])
                torch_layer.bias.to_local().copy_(dense.bias)
            y = torch_layer(_leaf(local))
            same = torch.allclose(y, expected)
            lines.append(f"transformers rowwise, {what}: expected the dense output (torch's RowwiseParallel on the "
                         f"same input: {'exact' if same else 'wrong too'}), got RuntimeError: {str(exc).splitlines()[0]}")
    # the sequence-parallel row style (output_layouts=Shard(0): the partial outputs reduce-scattered along the
    # sequence, dim 0), its sequence expanded from size 1
    seq = torch.randn(1, 3, 2 * world_size, dtype=torch.float64).expand(2 * world_size, 3, 2 * world_size)
    expected = dense(seq.contiguous())[2 * rank:2 * rank + 2]
    try:
        y = _hf_rowwise(dense, mesh, RowwiseParallel(output_layouts=Shard(0)))(_leaf(seq[..., 2 * rank:2 * rank + 2]))
        if not torch.allclose(y, expected):
            lines.append(f"transformers sequence-parallel rowwise: wrong output, max error {(y - expected).abs().max():g}")
    except RuntimeError as exc:
        lines.append("transformers sequence-parallel rowwise (output_layouts=Shard(0)), the sequence expanded from size "
                     f"1: expected this rank's sequence chunk of the dense output, got RuntimeError: "
                     f"{str(exc).splitlines()[0]}")
    return lines
