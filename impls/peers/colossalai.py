"""ColossalAI 0.5.0 shardformer layers (``colossalai.shardformer.layer``) as a peer.

How the protocol maps onto ColossalAI (read from its source, 0.5.0):

- column: ``Linear1D_Col.from_native_module(nn.Linear, process_group=group, gather_output=...)``.
  It shards the weight and bias rows itself (``shard_rowwise`` / ``shard_colwise``: even splits);
  its forward is ``LinearWithAsyncCommunication`` (identity forward, all-reduce of the input grad)
  and, gathered, ``gather_forward_split_backward`` on the last dim.
- row: ``Linear1D_Row.from_native_module(nn.Linear, process_group=group, parallel_input=...)``
  (``parallel_input`` is the protocol's ``input_is_parallel``; a full input is split with
  ``split_forward_gather_backward``); all-reduce forward, the replicated bias added after it.
- non-divisible dims: ``from_native_module`` raises ``ValueError`` when the split dim does not divide
  by the TP size, so ``uneven_shards=False``. When the split dim is *smaller* than the TP size it
  returns the ``nn.Linear`` unchanged instead (a deliberate shortcut for small layers); that is
  reported as it is, never patched here (see ``colossalai.toml``).
- group: ``process_group=`` the group the suite gives (WORLD or a TP sub-group); no global state.
- sequence parallel: the same layers with ``seq_parallel_mode="split_gather"`` (the mode that shares
  the TP group; ``"ring"`` is the same maths with a ring schedule, ``"all_to_all"`` is attention-only
  and not a linear-layer mode) and ``seq_parallel_dim=0`` (the protocol's sequence dim; ColossalAI's
  default 1 is for ``[batch, seq, hidden]``). Column: gather forward / reduce-scatter backward, output
  left sharded; row: reduce-scatter forward / all-gather backward, fed its feature slice.
- vocab-parallel embedding: ``VocabParallelEmbedding1D.from_native_module(nn.Embedding, group)`` with
  its default ``make_vocab_size_divisible_by=64``: the table is padded to a multiple of 64 × TP size
  and the padded table split evenly. The adapter declares that for the embedding family alone
  (``Capabilities.families``: ``uneven_shards`` and ``padded_shards``), and its shards are reported as
  held, padding included: the suite checks the real rows and that the padding rows get no gradient.
- merged column: ``FusedLinear1D_Col.from_native_module(nn.Linear, group, split_sizes=blocks)``:
  each block split on its own, a rank's blocks concatenated in block order (its
  ``split_fused_qkv_in_gpt2_style``), output left sharded — the protocol's semantics. Every block
  must divide by the TP size (it asserts), as the protocol's merged cases guarantee.
- primitives: ``_operation``'s ``reduce_backward`` (copy-to), ``reduce_forward`` (reduce-from),
  ``split_forward_gather_backward`` and ``gather_forward_split_backward`` on the last dim.
- CPU: every layer's constructor builds a ``Randomizer`` (an RNG state for initialising weights
  the suite then overwrites: the adapter passes the weights in, so it is never used), which calls
  ColossalAI's ``CpuAccelerator.get_rng_state()`` — ``torch.get_rng_state(device)``, a call torch
  has never accepted (``TypeError: get_rng_state() takes 0 positional arguments but 1 was given``)
  — and ``CpuAccelerator.manual_seed``, which raises "not supported for cpu accelerator". On a GPU
  machine ColossalAI uses its CUDA accelerator and never reaches that code, so this is a CPU-only
  limitation: :func:`_rng_on_cpu` gives the ``Randomizer`` (in ``shardformer.layer.utils`` only,
  never in torch or elsewhere in ColossalAI) an accelerator whose RNG calls are torch's CPU ones, as
  the megatron adapter redirects ``torch.cuda.current_device()`` in megatron's mappings. No layer's
  forward or backward goes through it.
- dtypes: the layers keep the weight's dtype (``from_native_module`` passes ``dtype=None``); every
  dtype runs on CPU. ``fp8_communication`` stays off (CUDA only).

Not offered: nothing else in ``colossalai.shardformer.layer`` fits the protocol's families
(``GPT2FusedLinearConv1D_*`` take Conv1D's transposed ``[in, out]`` weight; ``FusedLinear1D_Row`` is
an ordinary row layer; ``Embedding1D`` shards the embedding dim, not the vocabulary).

Install without letting it replace torch (0.5.0 pins ``torch<=2.5.1``):
``pip install --no-deps colossalai==0.5.0`` then ``pip install psutil packaging tqdm rich einops
safetensors pydantic contexttimer click ninja transformers==4.51.3 peft==0.13.2 accelerate==1.15.0
galore-torch==1.0 bitsandbytes==0.50.2`` (pinned: none of these versions pulls another torch; the line
is ``PEER.install`` below).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn
from tpconform.impls.peers import Peer
from tpconform.impls.peers.dense import dense_linear
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

# CI runs shards and gradients at world sizes 1-2, ~150 s on a loaded 2-core machine, over the ~60 s target (its
# import costs ~5 s per worker and each crashing deviation restarts a group; the default run took ~15 min). A
# forward-only scope makes colossalai-column-1d-input STALE: the 1-D column input fails only in backward, so the
# scope needs a gradient test.
PEER = Peer(summary="ColossalAI 0.5.0 shardformer Linear1D_Col/Row, SP, VocabParallelEmbedding1D, FusedLinear1D_Col",
            requires="colossalai", distribution="colossalai==0.5.0",
            install="pip install --no-deps colossalai==0.5.0 && "
                    "pip install psutil packaging tqdm rich einops safetensors pydantic contexttimer click ninja "
                    "transformers==4.51.3 peft==0.13.2 accelerate==1.15.0 galore-torch==1.0 bitsandbytes==0.50.2",
            ci_scope=("--world-sizes=1-2", "tests/properties/test_shards.py", "tests/properties/test_gradients.py"))

warnings.filterwarnings("ignore", message=".*(apex|tensornvme).*")  # optional CUDA kernels, printed per process
warnings.filterwarnings("ignore", message=".*all_gather_into_tensor` is deprecated", category=FutureWarning)
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
try:
    import colossalai
    from colossalai.shardformer.layer import FusedLinear1D_Col, Linear1D_Col, Linear1D_Row, VocabParallelEmbedding1D
    from colossalai.shardformer.layer import _operation as ops
    from colossalai.shardformer.layer import utils as layer_utils
except ImportError as exc:  # one clear line through registry.load
    raise ImportError(f"{exc}; install ColossalAI: {PEER.install}") from None

SP_MODE = "split_gather"


class _CpuRng:
    """ColossalAI's accelerator, as its ``Randomizer`` sees it on a CPU-only machine: the RNG calls are
    torch's CPU ones (``CpuAccelerator`` passes a device to ``torch.get_rng_state()``, which takes
    none, and refuses ``manual_seed``); everything else is the accelerator's own."""

    def __init__(self, accelerator):
        self._accelerator = accelerator

    def __getattr__(self, name):
        return getattr(self._accelerator, name)

    @staticmethod
    def get_rng_state(device=None):
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state, device=None):
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed):
        torch.manual_seed(seed)


def _rng_on_cpu() -> None:
    accelerator = layer_utils.get_accelerator()
    if type(accelerator).__name__ == "CpuAccelerator":  # CUDA/NPU accelerators work as they are
        proxy = _CpuRng(accelerator)
        layer_utils.get_accelerator = lambda: proxy


_rng_on_cpu()


class Impl(TensorParallelImpl):
    """ColossalAI shardformer 1D layers on CPU: both options, even dims only, every dtype, every family."""

    name = "colossalai"
    version = str(colossalai.__version__)
    # the linear layers raise on non-divisible dims; the embedding pads any vocabulary (declared, so
    # its padded shards are judged as such: real rows rebuild the table, padding rows get no grad)
    capabilities = Capabilities(uneven_shards=False,
                                families={"embedding": {"uneven_shards": True, "padded_shards": True}})

    def column(self, weight, bias, *, gather_output, group):
        return Linear1D_Col.from_native_module(dense_linear(weight, bias), process_group=group, gather_output=gather_output)

    def row(self, weight, bias, *, input_is_parallel, group):
        return Linear1D_Row.from_native_module(dense_linear(weight, bias), process_group=group,
                                               parallel_input=input_is_parallel)

    def column_sequence_parallel(self, weight, bias, *, group):
        return Linear1D_Col.from_native_module(dense_linear(weight, bias), process_group=group, gather_output=False,
                                               seq_parallel_mode=SP_MODE, seq_parallel_dim=0)

    def row_sequence_parallel(self, weight, bias, *, group):
        return Linear1D_Row.from_native_module(dense_linear(weight, bias), process_group=group, parallel_input=True,
                                               seq_parallel_mode=SP_MODE, seq_parallel_dim=0)

    def vocab_parallel_embedding(self, weight, *, group):
        vocab, dim = weight.shape
        embedding = nn.Embedding(vocab, dim, dtype=weight.dtype)
        with torch.no_grad():
            embedding.weight.copy_(weight)
        return VocabParallelEmbedding1D.from_native_module(embedding, group)

    def merged_column(self, weights, biases, *, group):
        weight = torch.cat(list(weights))
        bias = None if biases is None or biases[0] is None else torch.cat(list(biases))
        return FusedLinear1D_Col.from_native_module(dense_linear(weight, bias), group,
                                                    split_sizes=[int(w.shape[0]) for w in weights],
                                                    gather_output=False)

    def primitives(self, group):
        return {
            "copy_to": lambda x: ops.reduce_backward(x, group),
            "reduce_from": lambda x: ops.reduce_forward(x, group),
            "scatter_to": lambda x: ops.split_forward_gather_backward(x, -1, group),
            "gather_from": lambda x: ops.gather_forward_split_backward(x, -1, group),
        }
