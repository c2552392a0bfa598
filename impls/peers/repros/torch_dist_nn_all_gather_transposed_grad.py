"""torch 2.13.0, Gloo: torch.distributed.nn.functional.all_gather gives a wrong input grad when the upstream
grad of a gathered tensor is transposed (a column-major layout: what ``y.t()`` downstream hands back). Its
backward on Gloo (``_AllGather.backward`` -> ``_AlltoAll``, emulated by one ``dist.scatter`` per rank) makes
its receive buffers with ``torch.empty_like(grad)``, which keeps the grad's transposed strides, and Gloo's
scatter fills a buffer's storage in row-major order: every received grad, the rank's own included, is read
back column-major, its elements out of place. Minimal case: 2 ranks, x of shape [2, 3] requiring grad,
``outs = all_gather(x)``, each rank's upstream grad for ``outs[i]`` the [2, 3] tensor ``g.t().contiguous().t()``
(the same values, column-major): rank 0's ``x.grad`` should be [[0, 3, 6], [9, 12, 15]] (the sum of the grads
both ranks gave ``outs[0]``) and is [[0, 6, 12], [3, 9, 15]]. No error. Contiguous upstream grads are exact
(the same script with ``return g``); the NCCL path (a reduce-scatter) is other code. Likely cause, to name in
a report: ``empty_like`` (``preserve_format``) receive buffers for a collective that assumes contiguous ones;
``torch.empty(size)`` or ``grad.contiguous()`` first would fix it."""

import torch
import torch.distributed.nn.functional as dist_nn


def upstream(sender: int, slot: int) -> torch.Tensor:
    """The grad rank ``sender`` gives ``outs[slot]``: distinct values, laid out column-major."""
    g = torch.arange(6, dtype=torch.float64).reshape(2, 3) * (sender + 1) + 10 * slot
    return g.t().contiguous().t()  # shape [2, 3], stride (1, 2)


WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    outs = dist_nn.all_gather(x)
    torch.autograd.backward(outs, [upstream(rank, i) for i in range(world_size)])
    expected = sum(upstream(sender, rank).contiguous() for sender in range(world_size))
    if not torch.equal(x.grad, expected):
        return [f"expected x.grad = the sum of the grads every rank gave outs[{rank}], {expected.tolist()}, "
                f"got {x.grad.tolist()}"]
    return []
