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
  gathered column allocate on ``torch.cuda.current_device()``; :func:`_run_on_cpu` redirects that
  call to ``"cpu"`` inside megatron's ``tensor_parallel.mappings`` module only (its module-level
  ``torch`` is replaced by a proxy), never in torch itself.
"""

from __future__ import annotations

import types
import warnings

import torch
from torch import nn

from impls.protocol import Capabilities, TensorParallelImpl

warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")
warnings.filterwarnings("ignore", message=".*all_gather_into_tensor` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*CUDA_DEVICE_MAX_CONNECTIONS")
try:
    from megatron.core import ModelParallelConfig, package_info
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear, mappings
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
    if not isinstance(mappings.torch, _TorchOnCpu):
        mappings.torch = _TorchOnCpu("torch")


def _config(weight, group) -> ModelParallelConfig:
    return ModelParallelConfig(tensor_model_parallel_size=group.size(), use_cpu_initialization=True,
                               params_dtype=weight.dtype)


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

    def forward(self, layer, x):
        batch = x.shape[:-1]
        output, output_bias = layer(x.reshape(-1, 1, x.shape[-1]))  # [seq=N, batch=1, hidden]
        assert output_bias is None  # skip_bias_add=False: the bias is already in the output
        return output.reshape(*batch, output.shape[-1])

    def primitives(self, group):
        """``megatron.core.tensor_parallel.mappings``' four tensor-model-parallel region functions on ``group``."""
        _run_on_cpu()
        return {
            "copy_to": lambda x: mappings.copy_to_tensor_model_parallel_region(x, group),
            "reduce_from": lambda x: mappings.reduce_from_tensor_model_parallel_region(x, group),
            "scatter_to": lambda x: mappings.scatter_to_tensor_model_parallel_region(x, group),
            "gather_from": lambda x: mappings.gather_from_tensor_model_parallel_region(x, group),
        }
