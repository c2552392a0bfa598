"""torch 2.13.0, Gloo: dist.all_reduce on a non-contiguous tensor (a stride-2 view) returns wrong sums. Gloo
reduces the tensor's storage as if the tensor were contiguous, so the elements the view skips are summed and
some of the view's own elements are not: rank r's x = torch.full((2, 4), r + 1)[:, ::2] comes back as
[[3, 3], [r + 1, r + 1]] on 2 ranks instead of [[3, 3], [3, 3]]. No error, no warning. (The NCCL backend
refuses non-contiguous tensors; the libraries that reduce a caller's tensor as it is given inherit this.)"""

import torch
import torch.distributed as dist

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    expected = float(sum(range(1, world_size + 1)))  # rank r's tensor holds r + 1
    x = torch.full((2, 4), float(rank + 1))[:, ::2]  # shape [2, 2], stride (4, 2)
    dist.all_reduce(x)
    if x.tolist() != [[expected] * 2] * 2:
        return [f"dist.all_reduce of a stride-2 view: expected {[[expected] * 2] * 2}, got {x.tolist()}"]
    return []
