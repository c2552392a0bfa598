"""ColossalAI 0.5.0: reduce_forward (reduce-from) all-reduces its input in place, and reduce_backward
(copy-to) all-reduces the upstream grad it is handed in place (_operation._reduce); on a
non-contiguous input or upstream grad, Gloo then reduces the wrong elements."""

import torch
import torch.distributed as dist
from colossalai.shardformer.layer._operation import reduce_backward, reduce_forward

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    lines = []
    x = torch.full((2,), float(rank + 1))
    y = reduce_forward(x, group)
    if x.tolist() != [rank + 1.0] * 2:
        lines.append(f"reduce_forward: expected its input to stay {[rank + 1.0] * 2}, got {x.tolist()} "
                     f"(output {y.tolist()})")
    leaf = torch.zeros(2, requires_grad=True)
    g = torch.full((2,), float(rank + 1))
    reduce_backward(leaf, group).backward(g)
    if g.tolist() != [rank + 1.0] * 2:
        lines.append(f"reduce_backward: expected the upstream grad to stay {[rank + 1.0] * 2}, got {g.tolist()}")
    expected = float(sum(range(1, world_size + 1)))  # rank r's tensors hold r + 1
    x = torch.full((2, 4), float(rank + 1))[:, ::2]  # a non-contiguous input (stride 2)
    y = reduce_forward(x, group)
    if y.tolist() != [[expected] * 2] * 2:
        lines.append(f"reduce_forward, non-contiguous input: expected {[[expected] * 2] * 2}, got {y.tolist()}")
    leaf = torch.zeros(2, 2, requires_grad=True)
    g = torch.full((2, 4), float(rank + 1))[:, ::2]  # a non-contiguous upstream grad
    reduce_backward(leaf, group).backward(g)
    if leaf.grad.tolist() != [[expected] * 2] * 2:
        lines.append(f"reduce_backward, non-contiguous upstream grad: expected the input grad "
                     f"{[[expected] * 2] * 2}, got {leaf.grad.tolist()}")
    return lines
