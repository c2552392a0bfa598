"""megatron-core 0.16.1: reduce_from_tensor_model_parallel_region all-reduces its input in place and returns
it; on a non-contiguous input it reduces a .contiguous() copy, discards it and returns the input unreduced."""

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    lines = []
    expected = float(sum(range(1, world_size + 1)))  # rank r's input holds r + 1
    leaf = torch.full((2,), float(rank + 1), requires_grad=True)
    try:
        reduce_from_tensor_model_parallel_region(leaf, group)
    except RuntimeError as exc:
        lines.append(f"on a leaf that requires grad: expected [{expected}, {expected}], got RuntimeError: {exc}")
    x = torch.full((2,), float(rank + 1))
    y = reduce_from_tensor_model_parallel_region(x, group)
    if x.tolist() != [rank + 1.0] * 2:
        lines.append(f"its input was modified in place: expected {[rank + 1.0] * 2}, got {x.tolist()} "
                     f"(output {y.tolist()})")
    x = torch.full((2, 4), float(rank + 1))[:, ::2]  # a non-contiguous input (stride 2)
    y = reduce_from_tensor_model_parallel_region(x, group)
    if y.tolist() != [[expected] * 2] * 2:
        lines.append(f"non-contiguous input: expected {[[expected] * 2] * 2}, got {y.tolist()}")
    return lines
