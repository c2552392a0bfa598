"""transformers 5.25.0: transformers.distributed.parallel_utils._AllReduceForward (all-reduce forward, identity
backward; its MoE and all_reduce styles use it) runs dist.all_reduce on the tensor it is given and returns it.
So (1) it overwrites its input in place: the caller's tensor is changed; (2) on a non-contiguous input
(a stride-2 view) the sums are wrong, because Gloo reduces the storage as if contiguous (torch's own
behaviour: dtensor_gloo_all_reduce_strided.py): rank r's torch.full((2, 4), r + 1)[:, ::2] gives
[[3, 3], [r + 1, r + 1]] on 2 ranks instead of [[3, 3], [3, 3]]."""

import torch
import torch.distributed as dist
from transformers.distributed.parallel_utils import _AllReduceForward

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    lines = []
    expected = float(sum(range(1, world_size + 1)))  # rank r's input holds r + 1
    x = torch.full((2,), float(rank + 1))
    y = _AllReduceForward.apply(x, group)
    if x.tolist() != [rank + 1.0] * 2:
        lines.append(f"its input was modified in place: expected {[rank + 1.0] * 2}, got {x.tolist()} "
                     f"(output {y.tolist()})")
    x = torch.full((2, 4), float(rank + 1))[:, ::2]  # a non-contiguous input (stride 2)
    y = _AllReduceForward.apply(x, group)
    if y.tolist() != [[expected] * 2] * 2:
        lines.append(f"stride-2 input: expected {[[expected] * 2] * 2}, got {y.tolist()}")
    return lines
