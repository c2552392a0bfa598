"""megatron-core 0.16.1: copy_to_tensor_model_parallel_region's backward all-reduces the upstream grad
in place (and, for a non-contiguous grad, reduces a .contiguous() copy, discards it and returns the
grad unreduced)."""

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel.mappings import copy_to_tensor_model_parallel_region

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    lines = []
    x = torch.zeros(2, requires_grad=True)
    g = torch.full((2,), float(rank + 1))  # the upstream grad: rank r holds r + 1
    copy_to_tensor_model_parallel_region(x, group).backward(g)
    expected = float(sum(range(1, world_size + 1)))
    if g.tolist() != [rank + 1.0] * 2:
        lines.append(f"the upstream grad was modified in place: expected {[rank + 1.0] * 2}, got {g.tolist()}")
    x = torch.zeros(2, 2, requires_grad=True)
    g = torch.full((2, 4), float(rank + 1))[:, ::2]  # a non-contiguous upstream grad (stride 2)
    copy_to_tensor_model_parallel_region(x, group).backward(g)
    if x.grad.tolist() != [[expected] * 2] * 2:
        lines.append(f"non-contiguous upstream grad: expected input grad {[[expected] * 2] * 2}, got {x.grad.tolist()}")
    return lines
