"""ColossalAI 0.5.0: Linear1D_Col / Linear1D_Row.from_native_module return the nn.Linear unsharded when the
split dim is smaller than the TP size (instead of raising, as for other non-divisible sizes)."""

import torch
import torch.distributed as dist
from colossalai.shardformer.layer import Linear1D_Col, Linear1D_Row
from torch import nn

WORLD_SIZE = 2


def _cpu_rng() -> None:
    """CPU only (a ColossalAI CPU limitation, not the bug shown): its layers build a Randomizer whose
    CpuAccelerator.get_rng_state() calls torch.get_rng_state(device), which torch refuses; give the
    Randomizer torch's CPU RNG calls. Not needed on a GPU machine."""
    from colossalai.shardformer.layer import utils

    accelerator = utils.get_accelerator()

    class CpuRng:
        def __getattr__(self, name):
            return getattr(accelerator, name)

        get_rng_state = staticmethod(lambda device=None: torch.get_rng_state())
        set_rng_state = staticmethod(lambda state, device=None: torch.set_rng_state(state))
        manual_seed = staticmethod(torch.manual_seed)

    if type(accelerator).__name__ == "CpuAccelerator":
        utils.get_accelerator = CpuRng


def check(rank: int, world_size: int) -> list[str]:
    _cpu_rng()
    group = dist.group.WORLD
    lines = []
    col = Linear1D_Col.from_native_module(nn.Linear(4, 1), process_group=group, gather_output=False)
    y = col(torch.randn(3, 4))
    if type(col) is nn.Linear:
        lines.append(f"Linear1D_Col.from_native_module(nn.Linear(4, 1), gather_output=False): expected a "
                     f"Linear1D_Col holding rank {rank}'s slice of the 1 output row (or a ValueError), got the "
                     f"dense nn.Linear; output shape {list(y.shape)}, weight {list(col.weight.shape)} on every rank")
    row = Linear1D_Row.from_native_module(nn.Linear(1, 3), process_group=group, parallel_input=True)
    x = torch.randn(1, 1)[:, rank:rank + 1]  # this rank's slice of the 1 input column ([1, 0] on rank 1)
    try:
        row(x)
    except RuntimeError as exc:
        lines.append(f"Linear1D_Row.from_native_module(nn.Linear(1, 3), parallel_input=True) fed its slice "
                     f"{list(x.shape)}: expected the reduced [1, 3] output, got {type(row).__name__} raising "
                     f"RuntimeError: {str(exc).splitlines()[0]}")
    return lines
