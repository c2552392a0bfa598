"""fairscale 0.4.13 ``fairscale.nn.model_parallel`` Column/RowParallelLinear as a peer.

How the protocol maps onto fairscale: the options have the same names (``gather_output``,
``input_is_parallel``); forward takes ``[*, features]`` and returns a tensor; the row bias is whole
and added after the all-reduce. fairscale splits with ``divide_and_check_no_remainder``, so
non-divisible dims raise at construction (``uneven_shards=False``).

Set-up: fairscale's layers use a global model-parallel group; it is initialised lazily, once per
worker process and TP size, with ``initialize_model_parallel(tp_size)`` (kept per size and swapped
in, never re-created) and checked to be the group the suite gives. fairscale allocates its
parameters in the default dtype and zeroes the bias, so the adapter casts the layer to the example's
dtype and then copies this rank's shards (``torch.tensor_split`` rows/columns, which equal fairscale's
even split) and the bias into it.

Primitives: ``fairscale.nn.model_parallel.mappings``' four ``*_model_parallel_region`` functions, on the
global model-parallel group made the suite's (three library bugs, in ``fairscale.toml``; its
``reduce_from`` writes into its input and marks it dirty, which autograd refuses on a leaf).
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.distributed as dist
from torch import nn
from tpconform.impls.peers import Peer
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

# CI runs every property file in every dtype at world sizes 1-2 (1-3 took 47 s of a 24-minute self-test run; the
# complete default run ~60 s on a loaded 2-core machine, most of it at world sizes 5-8, where an adapter runs no
# code it does not run at 2 and 3); TPCONFORM_PEERS_FULL=1 runs the defaults (world sizes 1-8).
PEER = Peer(summary="fairscale 0.4.13 model_parallel Column/RowParallelLinear", requires="fairscale",
            distribution="fairscale==0.4.13", ci_scope=("--world-sizes=1-2",))

try:
    import fairscale
    from fairscale.nn.model_parallel import initialize as mpu
    from fairscale.nn.model_parallel import mappings
    from fairscale.nn.model_parallel.layers import ColumnParallelLinear, RowParallelLinear
except ImportError as exc:  # one clear line through registry.load
    raise ImportError(f"{exc}; install the peers extra: pip install -e '.[peers]'") from None


_GLOBALS = ("_MODEL_PARALLEL_GROUP", "_DATA_PARALLEL_GROUP", "_PIPELINE_PARALLEL_GROUP", "_PIPELINE_PARALLEL_RANKS")
_by_size: dict[int, tuple] = {}  # TP size -> fairscale's group globals for it, made once per worker


def _ensure_model_parallel(group) -> None:
    """Make fairscale's (global) model-parallel group the TP group the suite gives.

    ``initialize_model_parallel(n)`` splits the world into groups of ``n`` consecutive ranks, which
    is how the suite forms TP sub-groups; it is collective over the world, and every rank asks for
    the same size at the same time. Its groups are made once per size and swapped back in when the
    size comes again: re-initialising on every switch (``destroy_model_parallel`` only forgets the
    groups) leaked Gloo groups until ``new_group`` failed ('Resource temporarily unavailable') after
    ~30 switches between TP sizes 2 and 3 at world size 6. Rank 0's banner is muted."""
    ranks = dist.get_process_group_ranks(group)
    if len(ranks) not in _by_size:
        mpu.destroy_model_parallel()
        with contextlib.redirect_stdout(io.StringIO()):
            mpu.initialize_model_parallel(len(ranks))
        _by_size[len(ranks)] = tuple(getattr(mpu, name) for name in _GLOBALS)
    for name, value in zip(_GLOBALS, _by_size[len(ranks)]):
        setattr(mpu, name, value)
    if dist.get_process_group_ranks(mpu.get_model_parallel_group()) != ranks:
        raise RuntimeError(f"fairscale's model-parallel group is not the TP group {ranks} it was given")


def _load(layer, weight, bias, dim):
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

    def primitives(self, group):
        """``fairscale.nn.model_parallel.mappings``' four region functions, on the global model-parallel
        group made the given one."""
        _ensure_model_parallel(group)
        return {
            "copy_to": mappings.copy_to_model_parallel_region,
            "reduce_from": mappings.reduce_from_model_parallel_region,
            "scatter_to": mappings.scatter_to_model_parallel_region,
            "gather_from": mappings.gather_from_model_parallel_region,
        }
