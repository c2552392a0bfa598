"""fairscale 0.4.13 ``fairscale.nn.model_parallel`` Column/RowParallelLinear as a peer.

How the protocol maps onto fairscale: the options have the same names (``gather_output``,
``input_is_parallel``); forward takes ``[*, features]`` and returns a tensor; the row bias is whole
and added after the all-reduce. fairscale splits with ``divide_and_check_no_remainder``, so
non-divisible dims raise at construction (``uneven_shards=False``).

Set-up: the model-parallel state is initialised lazily, once per worker process, with
``initialize_model_parallel(world_size)`` over the default (WORLD) group. fairscale allocates its
parameters in the default dtype and zeroes the bias, so the adapter casts the layer to the example's
dtype and then copies this rank's shards (``torch.tensor_split`` rows/columns, which equal fairscale's
even split) and the bias into it.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.distributed as dist
from torch import nn

from impls.protocol import Capabilities, TensorParallelImpl

try:
    import fairscale
    from fairscale.nn.model_parallel import initialize as mpu
    from fairscale.nn.model_parallel.layers import ColumnParallelLinear, RowParallelLinear
except ImportError as exc:  # one clear line through registry.load
    raise ImportError(f"{exc}; install the peers extra: pip install -e '.[peers]'") from None


def _ensure_model_parallel(group) -> None:
    """Initialise fairscale's groups for this world once (idempotent); rank 0's banner is muted."""
    size = dist.get_world_size(group)
    if mpu.model_parallel_is_initialized():
        if mpu.get_model_parallel_world_size() != size:
            raise RuntimeError(f"fairscale is initialised for {mpu.get_model_parallel_world_size()} ranks, not {size}")
        return
    with contextlib.redirect_stdout(io.StringIO()):
        mpu.initialize_model_parallel(size)


def _load(layer: nn.Module, weight, bias, dim: int) -> nn.Module:
    """Cast ``layer`` to the example's dtype, then copy this rank's shard of ``weight`` and the bias."""
    rank, size = mpu.get_model_parallel_rank(), mpu.get_model_parallel_world_size()
    layer.to(weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor_split(weight, size, dim=dim)[rank])
        if bias is not None:
            layer.bias.copy_(torch.tensor_split(bias, size)[rank] if dim == 0 else bias)
    return layer


class Impl(TensorParallelImpl):
    """fairscale model-parallel layers: both options, even dims only, every dtype."""

    name = "fairscale"
    version = str(fairscale.__version__)
    capabilities = Capabilities(uneven_shards=False)

    def column(self, weight, bias, *, gather_output, group):
        _ensure_model_parallel(group)
        out_features, in_features = weight.shape
        layer = ColumnParallelLinear(in_features, out_features, bias=bias is not None,
                                     gather_output=gather_output, init_method=nn.init.zeros_)
        return _load(layer, weight, bias, dim=0)

    def row(self, weight, bias, *, input_is_parallel, group):
        _ensure_model_parallel(group)
        out_features, in_features = weight.shape
        layer = RowParallelLinear(in_features, out_features, bias=bias is not None,
                                  input_is_parallel=input_is_parallel, init_method=nn.init.zeros_)
        return _load(layer, weight, bias, dim=1)
