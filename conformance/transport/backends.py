"""The process-group backend: ``gloo`` (CPU, the default) or ``nccl`` (one rank per GPU).

The backend is one setting per run: ``--backend`` stores it in the environment
(``TPCONFORM_BACKEND``) before the first process group starts, so the forkserver and every worker
it starts inherit it. With ``nccl``, rank ``r`` of a group runs on ``cuda:r`` (it becomes the
worker's default device, so every tensor the harness makes lands there too), the example's
tensors are moved there on arrival, and results go back as CPU tensors through
``tpconform.transport.wire`` as always. World sizes larger than the number of GPUs are skipped, with the
reason in the report. The properties are the same for every backend.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

BACKENDS = ("gloo", "nccl")
ENV = "TPCONFORM_BACKEND"


def select(backend: str) -> None:
    """Use ``backend`` for every process group this process starts from now on."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    os.environ[ENV] = backend


def selected() -> str:
    return os.environ.get(ENV, "gloo")


def gpu_count() -> int:
    import torch  # lazy: --backend is checked without torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def runnable_world_sizes(backend: str, sizes: Sequence[int]) -> tuple[list[int], Optional[str]]:
    """The world sizes ``backend`` can run here, and why the others cannot (``None``: all can)."""
    if backend != "nccl":
        return list(sizes), None
    gpus = gpu_count()
    kept = [s for s in sizes if s <= gpus]
    dropped = [s for s in sizes if s > gpus]
    if not dropped:
        return kept, None
    return kept, (f"--backend nccl places one rank per GPU and this machine has {gpus} GPU(s): "
                  f"world size(s) {dropped} skipped")


# -- worker side ------------------------------------------------------------------------------
def set_up_device(backend: str, rank: int):
    """Called in a worker before ``init_process_group``: the device this rank computes on."""
    import torch  # lazy: --backend is checked without torch

    if backend != "nccl":
        return torch.device("cpu")
    device = torch.device("cuda", rank)
    # The tolerance model (tpconform.spec.tolerance) assumes float32 accumulation for float16/bfloat16
    # and true float32 for float32, which is what PyTorch does on the CPU. On the GPU, torch's
    # defaults let cuBLAS reduce float16/bfloat16 split-K partial sums in 16 bits, so a correct
    # F.linear could exceed the bound there: a false failure. The suite's GPU workers use full-precision
    # reductions (an impl that sets these flags itself is judged by what it then computes).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cudnn.allow_tf32 = False
    torch.cuda.set_device(device)
    torch.set_default_device(device)
    torch.empty(1, device=device)  # create the CUDA context now, before any candidate code
    return device


def to_device(obj: Any, device) -> Any:
    """``obj`` (a decoded message) with every tensor moved to ``device``."""
    import torch  # lazy: --backend is checked without torch

    if device is None or device.type == "cpu":
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj
