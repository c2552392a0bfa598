"""transformers 5.25.0: transformers.distributed.parallel_utils._AllReduceBackward (identity forward, all-reduce
of the grad backward; ColwiseParallel's quantized path and the MoE styles use it) calls grad.contiguous() and
dist.all_reduce on the result in place: on a contiguous upstream grad that is the grad autograd handed it, which
it overwrites. The caller's grad tensor is changed, and a sibling branch that receives the same grad tensor
(y = _AllReduceBackward.apply(x1) + x2: AddBackward hands both inputs the same tensor) gets the all-reduced
grad instead of its own, silently, depending on the order autograd runs the two branches."""

import torch
import torch.distributed as dist
from transformers.distributed.parallel_utils import _AllReduceBackward

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    lines = []
    total = float(sum(range(1, world_size + 1)))  # rank r's upstream grad holds r + 1
    x1 = torch.zeros(2, requires_grad=True)
    grad = torch.full((2,), float(rank + 1))
    _AllReduceBackward.apply(x1, group).backward(grad)
    if grad.tolist() != [rank + 1.0] * 2:
        lines.append(f"the upstream grad was modified in place: expected {[rank + 1.0] * 2}, got {grad.tolist()}")
    if x1.grad.tolist() != [total] * 2:
        lines.append(f"input grad: expected {[total] * 2}, got {x1.grad.tolist()}")
    # a sibling branch: w's grad is its own upstream grad, x1's the sum over the ranks
    x1 = torch.zeros(2, requires_grad=True)
    w = torch.zeros(2, requires_grad=True)
    h = w * 1.0  # the branch autograd runs after the all-reduce
    (h + _AllReduceBackward.apply(x1, group)).backward(torch.full((2,), float(rank + 1)))
    if w.grad.tolist() != [rank + 1.0] * 2:
        lines.append(f"a sibling branch's grad: expected {[rank + 1.0] * 2}, got {w.grad.tolist()}")
    return lines
