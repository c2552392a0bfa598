"""ColossalAI 0.5.0: a 1-D input (no batch dim), which nn.Linear accepts, breaks Linear1D_Col's backward
(LinearWithAsyncCommunication.backward takes a dot product where the weight grad is an outer product)."""

import torch
from colossalai.shardformer.layer import Linear1D_Col
from torch import nn

WORLD_SIZE = 1


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
    torch.manual_seed(0)
    dense = nn.Linear(3, 2).double()
    layer = nn.Linear(3, 2).double()
    layer.load_state_dict(dense.state_dict())
    layer = Linear1D_Col.from_native_module(layer, process_group=None, gather_output=True)
    x = torch.randn(3, dtype=torch.float64)
    dense(x).sum().backward()
    try:
        layer(x).sum().backward()
    except RuntimeError as exc:
        return [f"expected weight grad {dense.weight.grad.tolist()} (nn.Linear on x of shape [3]), got "
                f"RuntimeError: {str(exc).splitlines()[0]}"]
    return [] if torch.allclose(layer.weight.grad, dense.weight.grad) else [
        f"expected weight grad {dense.weight.grad.tolist()}, got {layer.weight.grad.tolist()}"]
