"""megatron-core 0.16.1: its linear autograd function is wrapped in custom_fwd / custom_bwd for CUDA only
(``partial(torch.amp.custom_fwd, device_type="cuda")``), so under CPU autocast its backward does not run in
the forward's autocast state: a bfloat16 upstream grad meets the float32 weight and matmul refuses (the
training step nn.Linear takes under the same autocast)."""

import torch
from megatron.core.tensor_parallel.layers import linear_with_grad_accumulation_and_async_allreduce
from torch import nn

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    torch.manual_seed(0)
    dense = nn.Linear(4, 3, bias=False)  # float32 parameters (master weights)
    weight = nn.Parameter(dense.weight.detach().clone())
    x = torch.randn(2, 4).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = dense(x)
        got = linear_with_grad_accumulation_and_async_allreduce(x, weight, None, gradient_accumulation_fusion=False,
                                                                 allreduce_dgrad=False, sequence_parallel=False)
    want.float().sum().backward()  # backward outside the autocast region, as training loops run it
    try:
        got.float().sum().backward()
    except RuntimeError as exc:
        return [f"expected the weight grad {dense.weight.grad.tolist()} (nn.Linear under the same autocast), got "
                f"RuntimeError: {str(exc).splitlines()[0]}"]
    return [] if torch.allclose(weight.grad, dense.weight.grad) else [
        f"expected weight grad {dense.weight.grad.tolist()}, got {weight.grad.tolist()}"]
