"""megatron-core 0.16.1: gather_from_tensor_model_parallel_region's backward fails on empty (width-0) slices."""

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import mappings
from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

WORLD_SIZE = 2


class _CpuCuda:  # CPU only: megatron allocates the gathered output on torch.cuda.current_device()
    def __getattr__(self, name):
        return getattr(torch.cuda, name)

    @staticmethod
    def current_device():
        return "cpu"


class _TorchOnCpu:
    cuda = _CpuCuda()

    def __getattr__(self, name):
        return getattr(torch, name)


mappings.torch = _TorchOnCpu()  # in megatron's mappings module only; not needed on a GPU machine


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    x = torch.zeros(3, 0, requires_grad=True)  # every rank's slice is empty: the gathered output is [3, 0]
    y = gather_from_tensor_model_parallel_region(x, group)
    try:
        y.backward(torch.zeros_like(y))
    except IndexError as exc:
        return [f"expected the input grad of shape [3, 0], got IndexError: {exc} (in its backward's split)"]
    return []
