"""ColossalAI 0.5.0: gather_forward_split_backward's backward fails on empty (width-0) slices."""

import torch
import torch.distributed as dist
from colossalai.shardformer.layer._operation import gather_forward_split_backward

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    x = torch.zeros(0, requires_grad=True)
    y = gather_forward_split_backward(x, -1, dist.group.WORLD)
    try:
        y.sum().backward()
    except IndexError as exc:
        return [f"expected an empty input grad, got IndexError: {exc} (its backward's torch.split(grad, 0))"]
    return []
