"""megatron-core ``megatron.core.tensor_parallel`` Column/RowParallelLinear as a peer: 0.16.1 (pinned in the
``peers`` extra, the last release for Python 3.11) and the current release on Python 3.12 (``tox -e
peers-current``; 0.19.2 measured green at the defaults), through the same adapter.

How the protocol maps onto megatron-core:

- options: ``gather_output`` and ``input_is_parallel`` as is; ``skip_bias_add=False``, so the bias is
  added inside the layer (column: sharded, before the gather; row: whole, after the all-reduce) and
  ``forward`` returns ``(output, None)``, unpacked here.
- layout: megatron takes ``[seq, batch, hidden]``. The suite's input ``[*batch, in]`` (0-3 batch
  dims, possibly empty) is reshaped to ``[N, 1, in]`` (``seq = N`` = product of the batch dims,
  ``batch = 1``) and the output ``[N, 1, out]`` back to ``[*batch, out]``; both reshapes are autograd
  views, so the input grad flows back unchanged.
- group: the layers get ``tp_group=`` the group the suite gives (WORLD or a TP sub-group), so
  megatron's ``parallel_state`` needs no initialisation (with ``tp_group`` given and
  ``parallel_state`` uninitialised, megatron passes it through). ``divide()`` asserts
  divisibility: ``uneven_shards=False``.
- CPU: ``ModelParallelConfig(use_cpu_initialization=True, params_dtype=dtype)``, weights zero-
  initialised and then this rank's shards copied in. The all-gathers of the full-input row and the
  gathered column (and the sequence-parallel gather / reduce-scatter and megatron's global memory
  buffer) allocate on ``torch.cuda.current_device()``; :func:`_run_on_cpu` redirects that call to
  ``"cpu"`` inside megatron's ``tensor_parallel.mappings``, ``tensor_parallel.layers`` and
  ``core.utils`` modules only (their module-level ``torch`` is replaced by a proxy), never in torch.
- sequence parallel: the same layers with ``ModelParallelConfig(sequence_parallel=True)`` (column:
  ``gather_output=False``; row: ``input_is_parallel=True``), the input ``[seq, *rest, in]`` fed as
  ``[seq, prod(rest), in]``. At TP size 1 megatron's config refuses sequence parallelism and
  Megatron-LM turns it off; the plain layer is then the sequence-parallel one. The global memory
  buffer its all-gather writes into is made in :meth:`Impl.setup` (the one piece of
  ``initialize_model_parallel`` the layers need). The row layer's bias grad is partial on each rank
  by design (the bias is marked ``sequence_parallel``); megatron's ``finalize_model_grads`` sums it
  over the TP group before the optimizer step: the adapter declares that step
  (:meth:`Impl.finalize_grads`), so the suite judges the grad after it.
- primitives: ``tensor_parallel.mappings``' ``copy_to`` / ``reduce_from`` / ``scatter_to`` /
  ``gather_from_tensor_model_parallel_region`` on the group (three library bugs, in
  ``megatron.toml``).
- the block family's builder (``build_tp_block``): megatron-core's own ``TransformerLayer`` (local spec) on
  the suite's group, its fused parameters named through the name map's ranges form (``megatron_block.py``).
"""

from __future__ import annotations

import importlib
import math
import types
import warnings

import torch
from torch import nn
from tpconform.impls.peers import Peer
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

# CI runs every property file in every dtype at world sizes 1-2 (1-3 took 97 s of a 24-minute self-test run; the
# complete default run ~120 s); TPCONFORM_PEERS_FULL=1 runs the defaults (world sizes 1-8).
PEER = Peer(summary="megatron-core 0.16.1 tensor_parallel Column/RowParallelLinear; its TransformerLayer as the block "
                    "builder", requires="megatron",
            distribution="megatron-core==0.16.1", ci_scope=("--world-sizes=1-2",))

warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")
warnings.filterwarnings("ignore", message=".*all_gather_into_tensor` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*CUDA_DEVICE_MAX_CONNECTIONS")
try:
    from megatron.core import ModelParallelConfig, package_info, parallel_state
    from megatron.core import utils as core_utils
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear, mappings
    from megatron.core.tensor_parallel import layers as tp_layers
except ImportError as exc:  # one clear line through registry.load
    raise ImportError(f"{exc}; install the peers extra: pip install -e '.[peers]'") from None


class _CpuCuda:
    """``torch.cuda`` whose ``current_device()`` is the CPU."""

    def __getattr__(self, name):
        return getattr(torch.cuda, name)

    @staticmethod
    def current_device():
        return "cpu"


class _TorchOnCpu(types.ModuleType):
    """``torch`` as megatron's mappings module sees it: everything but ``cuda`` is torch's own."""

    cuda = _CpuCuda()

    def __getattr__(self, name):
        return getattr(torch, name)


def _run_on_cpu() -> None:
    for module in (mappings, tp_layers, core_utils):
        if not isinstance(module.torch, _TorchOnCpu):
            module.torch = _TorchOnCpu("torch")


def _config(weight, group, sequence_parallel: bool = False) -> ModelParallelConfig:
    """``sequence_parallel`` only where TP > 1: megatron's config refuses it at TP size 1 ("Cannot use
    sequence parallelism without tensor parallelism"), and Megatron-LM's own argument parsing turns it
    off there; on one rank the plain layer is the sequence-parallel one (the whole sequence)."""
    return ModelParallelConfig(tensor_model_parallel_size=group.size(), use_cpu_initialization=True,
                               params_dtype=weight.dtype, sequence_parallel=sequence_parallel and group.size() > 1)


# the module (megatron.core.distributed re-exports its function under the same name)
finalize = importlib.import_module("megatron.core.distributed.finalize_model_grads")
# what finalize_model_grads' sequence-parallel step reads of a model chunk and of its config
_FINALIZE_CONFIG = types.SimpleNamespace(sequence_parallel=True, qk_layernorm=False)
_NO_FSDP = types.SimpleNamespace(use_megatron_fsdp=False)


def sum_sequence_parallel_grads(module, config, group) -> None:
    """What Megatron-LM's ``finalize_model_grads`` does for sequence parallelism, on ``module`` alone: the sum
    over the TP group of the grads of parameters marked ``sequence_parallel``
    (``_allreduce_non_tensor_model_parallel_grads``, with what it reads of a model chunk, ``ddp_config``, and of
    ``config``: ``sequence_parallel``, ``qk_layernorm``)."""
    module.ddp_config = _NO_FSDP
    finalize._allreduce_non_tensor_model_parallel_grads([module], config, tp_group=group)


def _load(layer, weight, bias, dim, group):
    with torch.no_grad():
        layer.weight.copy_(torch.tensor_split(weight, group.size(), dim=dim)[group.rank()])
        if bias is not None:
            layer.bias.copy_(torch.tensor_split(bias, group.size())[group.rank()] if dim == 0 else bias)
    return layer


class Impl(TensorParallelImpl):
    """megatron-core tensor-parallel layers on CPU: both options, even dims only, every dtype."""

    name = "megatron"
    version = str(package_info.__version__)
    capabilities = Capabilities(uneven_shards=False)

    def setup(self, group):
        """The one piece of ``parallel_state.initialize_model_parallel`` the layers need without it: the
        global memory buffer the sequence-parallel all-gather writes into (on the CPU, via
        :func:`_run_on_cpu`). The groups themselves are passed to every layer (``tp_group=``)."""
        _run_on_cpu()
        if parallel_state._GLOBAL_MEMORY_BUFFER is None:
            parallel_state._set_global_memory_buffer()

    def column(self, weight, bias, *, gather_output, group):
        _run_on_cpu()
        out_features, in_features = weight.shape
        layer = ColumnParallelLinear(in_features, out_features, config=_config(weight, group),
                                     init_method=nn.init.zeros_, bias=bias is not None,
                                     gather_output=gather_output, tp_group=group)
        return _load(layer, weight, bias, 0, group)

    def row(self, weight, bias, *, input_is_parallel, group):
        _run_on_cpu()
        out_features, in_features = weight.shape
        layer = RowParallelLinear(in_features, out_features, config=_config(weight, group),
                                  init_method=nn.init.zeros_, bias=bias is not None,
                                  input_is_parallel=input_is_parallel, skip_bias_add=False, tp_group=group)
        return _load(layer, weight, bias, 1, group)

    def column_sequence_parallel(self, weight, bias, *, group):
        _run_on_cpu()
        out_features, in_features = weight.shape
        layer = ColumnParallelLinear(in_features, out_features, config=_config(weight, group, True),
                                     init_method=nn.init.zeros_, bias=bias is not None, gather_output=False,
                                     tp_group=group)
        layer.tp_sequence_parallel = True
        return _load(layer, weight, bias, 0, group)

    def row_sequence_parallel(self, weight, bias, *, group):
        _run_on_cpu()
        out_features, in_features = weight.shape
        layer = RowParallelLinear(in_features, out_features, config=_config(weight, group, True),
                                  init_method=nn.init.zeros_, bias=bias is not None, input_is_parallel=True,
                                  skip_bias_add=False, tp_group=group)
        layer.tp_sequence_parallel = True
        return _load(layer, weight, bias, 1, group)

    def finalize_grads(self, layer, group):
        """Sequence parallelism: the row layer's bias (marked ``param.sequence_parallel = True``) gets
        a partial grad on each rank, by design; megatron's ``finalize_model_grads`` sums such grads
        over the TP group before the optimizer step. This runs that step itself
        (``_allreduce_non_tensor_model_parallel_grads``, which ``finalize_model_grads`` calls) on the
        layer, with what it reads of a model chunk (``ddp_config``) and of the config."""
        if not getattr(layer, "sequence_parallel", False):  # megatron's own flag (off at TP size 1)
            return None
        sum_sequence_parallel_grads(layer, _FINALIZE_CONFIG, group)
        return ("megatron.core.distributed.finalize_model_grads' sum over the TP group of the grads of "
                "parameters marked sequence_parallel")

    def forward(self, layer, x):
        batch = x.shape[:-1]
        if getattr(layer, "tp_sequence_parallel", False):  # [seq, *rest, in] as [seq, batch=prod(rest), in]
            output, output_bias = layer(x.reshape(batch[0], math.prod(batch[1:]), x.shape[-1]))
            assert output_bias is None
            return output.reshape(output.shape[0], *batch[1:], output.shape[-1])  # its sequence gathered / scattered
        output, output_bias = layer(x.reshape(-1, 1, x.shape[-1]))  # [seq=N, batch=1, hidden]
        assert output_bias is None  # skip_bias_add=False: the bias is already in the output
        return output.reshape(*batch, output.shape[-1])

    def build_tp_block(self, block, group):
        """The block family's builder: megatron-core's own ``TransformerLayer`` (local spec) holding the dense
        block's weights, with its name map (``megatron_block.py``)."""
        from tpconform.impls.peers.megatron_block import build_tp_block
        return build_tp_block(block, group)

    def primitives(self, group):
        """``megatron.core.tensor_parallel.mappings``' four tensor-model-parallel region functions on ``group``."""
        _run_on_cpu()
        return {
            "copy_to": lambda x: mappings.copy_to_tensor_model_parallel_region(x, group),
            "reduce_from": lambda x: mappings.reduce_from_tensor_model_parallel_region(x, group),
            "scatter_to": lambda x: mappings.scatter_to_tensor_model_parallel_region(x, group),
            "gather_from": lambda x: mappings.gather_from_tensor_model_parallel_region(x, group),
        }
