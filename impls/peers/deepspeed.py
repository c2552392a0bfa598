"""DeepSpeed AutoTP layers (``deepspeed.module_inject.layers``) as a peer, in training mode.

How the protocol maps onto DeepSpeed:

- column: ``LinearLayer(nn.Linear, mp_group=group, gather_output=...)``, which splits the weight and
  bias rows itself (``get_shard_size_list``: uneven sizes allowed); its forward is DeepSpeed's
  ``ColumnParallel`` (identity / all-reduce of the input grad) and, gathered, its
  ``GatherFromTensorParallelRegion`` (padded ``all_gather_into_tensor``, trimmed).
- row: ``LinearAllreduce`` for ``input_is_parallel=True`` (its ``RowParallel``: all-reduce forward,
  identity backward; the replicated bias added after it) and ``LinearAllreduceWithReplicatedInput``
  for a full input (it slices its columns and all-reduces the input grad).
- mode: ``set_autotp_mode(training=True)``: DeepSpeed's inference mode has no backward and reduces
  through its own ``inference_all_reduce``.
- comm: ``deepspeed.comm`` wraps the ``torch.distributed`` group the suite built
  (``init_distributed(dist_backend="gloo")`` finds it initialised). ``DS_ACCELERATOR=cpu``.

Install without letting it replace torch: ``DS_BUILD_OPS=0 pip install --no-deps deepspeed==0.19.8``
then ``pip install hjson ninja py-cpuinfo pydantic msgpack psutil einops``.
"""

from __future__ import annotations

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import logging  # noqa: E402
import warnings  # noqa: E402

from tpconform.impls.peers import Peer  # noqa: E402
from tpconform.impls.peers.dense import dense_linear  # noqa: E402
from tpconform.impls.protocol import Capabilities, TensorParallelImpl  # noqa: E402

# CI runs every property file in every dtype at world sizes 1-3 (the complete default run took ~50 s on a loaded
# 2-core machine); TPCONFORM_PEERS_FULL=1 runs the defaults.
PEER = Peer(summary="DeepSpeed 0.19.8 AutoTP LinearLayer/LinearAllreduce (training mode)", requires="deepspeed",
            distribution="deepspeed==0.19.8",
            install="DS_BUILD_OPS=0 pip install --no-deps deepspeed==0.19.8 && "
                    "pip install hjson ninja py-cpuinfo pydantic msgpack psutil einops",
            ci_scope=("--world-sizes=1-3",))

try:
    import deepspeed  # noqa: E402
    import deepspeed.comm as ds_comm  # noqa: E402
    from deepspeed.module_inject import layers as ds_layers  # noqa: E402
except ImportError as exc:  # one clear line through registry.load
    raise ImportError(f"{exc}; install DeepSpeed: DS_BUILD_OPS=0 pip install --no-deps deepspeed==0.19.8 "
                      "hjson ninja py-cpuinfo pydantic msgpack psutil einops") from None


warnings.filterwarnings("ignore", message=".*all_gather_into_tensor` is deprecated", category=FutureWarning)
logging.getLogger("DeepSpeed").setLevel(logging.WARNING)


def _ready() -> None:
    if not ds_comm.is_initialized():
        ds_comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, verbose=False)
    ds_layers.set_autotp_mode(training=True)


class Impl(TensorParallelImpl):
    """DeepSpeed AutoTP column/row layers on CPU, training mode, both options, uneven sizes."""

    name = "deepspeed"
    version = str(deepspeed.__version__)
    capabilities = Capabilities(uneven_shards=True)
    setup_timeout_s = 900.0  # the first init_distributed on a machine compiles its comm extension: ~2.5 min here

    def setup(self, group):
        _ready()

    def column(self, weight, bias, *, gather_output, group):
        _ready()
        return ds_layers.LinearLayer(dense_linear(weight, bias), mp_group=group, gather_output=gather_output)

    def row(self, weight, bias, *, input_is_parallel, group):
        _ready()
        cls = ds_layers.LinearAllreduce if input_is_parallel else ds_layers.LinearAllreduceWithReplicatedInput
        return cls(dense_linear(weight, bias), group)
