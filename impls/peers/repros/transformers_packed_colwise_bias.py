"""transformers 5.25.0: PackedColwiseParallel (the "packed_colwise" style of fused gate-up / QKV projections) shards
the weight as _StridedShard(0, split_factor) (rank r holds its slice of every packed block, interleaved) but the
bias as plain Shard(0) (contiguous chunks of the whole bias). Loaded as transformers' loader loads them
(DtensorShardOperation(param).shard_tensor(full), then _dtensor_from_local_like), each rank's bias belongs to
other rows than its weight: nn.Linear(3, 4) with 2 packed blocks of 2 rows on 2 ranks, rank 0 holds weight rows
[0, 2] but bias entries [0, 1], and its output (rows [0, 2] of the dense one) is off by b[1] - b[2]."""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
from transformers.integrations.tensor_parallel import PackedColwiseParallel

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    mesh = DeviceMesh.from_group(dist.group.WORLD, "cpu")
    blocks, rows = 2, 2 * world_size  # 2 packed blocks (gate, up), each divisible by the world size
    dense = nn.Linear(3, blocks * rows, dtype=torch.float64)
    with torch.no_grad():
        dense.weight.copy_(torch.arange(blocks * rows * 3, dtype=torch.float64).reshape(-1, 3) / 10)
        dense.bias.copy_(torch.arange(blocks * rows, dtype=torch.float64) * 100)
    layer = nn.Linear(3, blocks * rows, dtype=torch.float64)
    style = PackedColwiseParallel(split_factor=blocks)
    for name, full in list(dense.named_parameters()):  # apply_tensor_parallelism's shard_param, then the loader
        style.shard_param(layer, name, mesh)
        ref = layer._parameters[name]
        local = DtensorShardOperation(ref).shard_tensor(full.detach())
        layer._parameters[name] = nn.Parameter(_dtensor_from_local_like(local, ref))
    style.install_forward(layer, mesh)
    x = torch.ones(1, 3, dtype=torch.float64)
    y = layer(x)
    mine = [b * rows + r for b in range(blocks) for r in range(rank * rows // world_size, (rank + 1) * rows // world_size)]
    expected = dense(x)[:, mine]  # this rank's slice of every block, in block order
    lines = []
    held = layer.bias.to_local().tolist()
    if held != dense.bias[mine].tolist():
        lines.append(f"bias shard: expected entries {mine} = {dense.bias[mine].tolist()}, got {held} "
                     f"(weight rows held: {mine})")
    if not torch.allclose(y, expected):
        lines.append(f"output: expected {expected.tolist()}, got {y.tolist()} "
                     f"(max error {(y - expected).abs().max().item():g})")
    return lines
