"""ColossalAI 0.5.0: Linear1D_Row with seq_parallel_mode="split_gather" leaves its bias grad partial
(each rank's covers only its sequence shard) and nothing reduces it."""

import torch
import torch.distributed as dist
from colossalai.shardformer.layer import Linear1D_Row
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
    torch.manual_seed(0)  # the same dense layer and input on every rank
    dense = nn.Linear(4, 3).double()
    x = torch.randn(4, 4, dtype=torch.float64)  # [sequence, features]
    dense(x).sum().backward()
    layer = nn.Linear(4, 3).double()
    layer.load_state_dict(dense.state_dict())
    layer = Linear1D_Row.from_native_module(layer, process_group=dist.group.WORLD, parallel_input=True,
                                            seq_parallel_mode="split_gather", seq_parallel_dim=0)
    cols = 4 // world_size
    layer(x[:, rank * cols:(rank + 1) * cols]).sum().backward()  # this rank's feature slice, whole sequence
    if not torch.allclose(layer.bias.grad, dense.bias.grad):
        return [f"expected bias grad {dense.bias.grad.tolist()} (nn.Linear), got {layer.bias.grad.tolist()}"]
    return []
