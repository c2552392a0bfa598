"""Hugging Face transformers' tensor-parallel styles (``transformers.distributed.tensor_parallel``, re-exported
by ``transformers.integrations.tensor_parallel``) as a peer: 5.25.0.

transformers 5.x shards a model by a plan (``tp_plan``: module or parameter name -> style name, the styles in
``ALL_PARALLEL_STYLES``); ``apply_tensor_parallelism`` calls each style's ``shard_param`` on the parameters
(DTensor placeholders) and ``install_forward`` on the modules, and the weight loader then fills each rank's
local shard (``DtensorShardOperation.shard_tensor`` of the checkpoint tensor, wrapped by
``_dtensor_from_local_like``). The adapter does exactly that on one dense module, with the full weight as
the "checkpoint" (:func:`_parallelize`). How the protocol maps onto the styles:

- column, ``gather_output=True``  -> ``"colwise_gather_output"``: ``ColwiseParallel(output_layouts=Replicate())``
- column, ``gather_output=False`` -> ``"colwise"``: ``ColwiseParallel()`` (output ``Shard(-1)``, returned local)
- row, ``input_is_parallel=True``  -> ``"rowwise"``: ``RowwiseParallel()`` (the local input is this rank's
  slice of ``in_features``: the style wraps it itself, with the true global width)
- row, ``input_is_parallel=False`` -> ``"rowwise_split_input"``: ``RowwiseParallel(input_layouts=Replicate())``
- sequence parallel: ``ColwiseParallel(input_layouts=Shard(0))`` (the sequence gathered forward,
  reduce-scattered backward; output left sharded) and ``RowwiseParallel(output_layouts=Shard(0))``
  (reduce-scatter of the partial outputs along the sequence). transformers' own ``"sequence_parallel"``
  style is for norms (it only marks the activations ``Shard(1)``); these are the linear styles with a
  sequence layout, as its plans combine them.
- vocab-parallel embedding: ``"embedding_rowwise"``: ``EmbeddingParallel(shard_dim=0)``; uneven
  vocabularies in ``torch.chunk`` style (a trailing rank may hold an empty shard), no padding.
- merged column: ``PackedColwiseParallel(split_factor=n_blocks)`` (``"packed_colwise"`` is the
  ``split_factor=2`` gate-up instance) on the blocks concatenated: the weight is ``_StridedShard(0, n)``
  (rank ``r`` holds its slice of every block, in block order), so only equal blocks are expressible:
  ``families={"merged": {"equal_blocks": True}}``.
- primitives: ``parallel_utils._AllReduceBackward`` (copy-to: identity / all-reduce of the grad) and
  ``_AllReduceForward`` (reduce-from: all-reduce / identity), the two transformers has (it has no scatter /
  gather autograd functions: those go through DTensor redistributes): ``primitives=("copy_to", "reduce_from")``.
- mesh: a 1-D CPU (Gloo) ``DeviceMesh.from_group`` of the group the suite gives (WORLD or a sub-group).
- training mode: the suite runs forward with grad enabled, so the styles take their DTensor path; under
  ``torch.no_grad()`` (the repeated-inference properties) ``ColwiseParallel`` / ``RowwiseParallel`` take
  their local inference fast path (local weight, ``dist.all_reduce`` of the output, the bias once), which is
  checked too.

Parameters are DTensors: shards and grads are read back with ``to_local()``; the optimizer steps the DTensors.

Install without letting it touch torch: ``pip install --no-deps transformers==5.25.0`` then ``pip install
--no-deps regex huggingface_hub httpx2 httpcore2 h11 idna truststore pyyaml 'safetensors>=0.8.0' tokenizers
tqdm filelock packaging`` (what importing its tensor-parallel module needs; the line is
``PEER.install`` below).
"""

from __future__ import annotations

import warnings
from typing import cast

import torch
from torch import nn
from tpconform.impls.peers import Peer
from tpconform.impls.peers.dense import dense_linear
from tpconform.impls.peers.dtensor import _local, _mesh
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

# CI (transformers 5.x is not installed by CI) runs its own four deviations' families, the packed (merged) column
# and its two primitives, at world sizes 1-3 (~10 s); its colwise / rowwise / embedding / sequence-parallel styles
# are DTensor ones, whose inherited entries the default run (TPCONFORM_PEERS_FULL=1) checks.
PEER = Peer(summary="HF transformers 5.25.0 TP styles: colwise/rowwise, SP, embedding_rowwise, packed_colwise, "
                    "2 primitives",
            requires="transformers", distribution="transformers==5.25.0",
            install="pip install --no-deps transformers==5.25.0 && pip install --no-deps regex huggingface_hub httpx2 "
                    "httpcore2 h11 idna truststore pyyaml 'safetensors>=0.8.0' tokenizers tqdm filelock packaging",
            series="5.", ci_scope=("--world-sizes=1-3", "tests/properties/test_families.py", "-k", "primitive or merged"))

warnings.filterwarnings("ignore", message=".*PyTorch was not found.*")
try:
    import transformers
    from torch.distributed.tensor import DTensor, Shard
    from transformers.distributed.parallel_utils import _AllReduceBackward, _AllReduceForward
    from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
    from transformers.integrations.tensor_parallel import (
        ALL_PARALLEL_STYLES,
        ColwiseParallel,
        PackedColwiseParallel,
        RowwiseParallel,
    )
except ImportError as exc:  # one clear line through registry.load
    raise ImportError(f"{exc}; install transformers: {PEER.install}") from None


def _parallelize(module: nn.Module, style, group) -> nn.Module:
    """``apply_tensor_parallelism`` and the weight loader on one module: each parameter made a DTensor by
    ``style.shard_param``, this rank's shard of the full value loaded as transformers' loader does
    (``DtensorShardOperation(param).shard_tensor(full)``), then ``style.install_forward``."""
    mesh = _mesh(group)
    for name, full in list(module.named_parameters(recurse=False)):
        style.shard_param(module, name, mesh)
        ref = cast(DTensor, module._parameters[name])  # the placeholder shard_param made
        local = DtensorShardOperation(ref).shard_tensor(full.detach())
        module._parameters[name] = nn.Parameter(_dtensor_from_local_like(local, ref), requires_grad=True)
    return style.install_forward(module, mesh)


class Impl(TensorParallelImpl):
    """transformers 5.x TP styles on a dense ``nn.Linear`` / ``nn.Embedding``: every linear option, uneven
    shards, every dtype; sequence parallel, vocab-parallel embedding, merged (equal blocks) and two primitives."""

    name = "transformers"
    version = str(transformers.__version__)
    capabilities = Capabilities(uneven_shards=True,
                                families={"merged": {"equal_blocks": True},
                                          "primitives": {"primitives": ("copy_to", "reduce_from")}})

    def column(self, weight, bias, *, gather_output, group):
        style = ALL_PARALLEL_STYLES["colwise_gather_output" if gather_output else "colwise"]
        return _parallelize(dense_linear(weight, bias), style, group)

    def row(self, weight, bias, *, input_is_parallel, group):
        style = ALL_PARALLEL_STYLES["rowwise" if input_is_parallel else "rowwise_split_input"]
        return _parallelize(dense_linear(weight, bias), style, group)

    def column_sequence_parallel(self, weight, bias, *, group):
        return _parallelize(dense_linear(weight, bias), ColwiseParallel(input_layouts=Shard(0)), group)

    def row_sequence_parallel(self, weight, bias, *, group):
        return _parallelize(dense_linear(weight, bias), RowwiseParallel(output_layouts=Shard(0)), group)

    def vocab_parallel_embedding(self, weight, *, group):
        vocab, dim = weight.shape
        embedding = nn.Embedding(vocab, dim, dtype=weight.dtype)
        with torch.no_grad():
            embedding.weight.copy_(weight)
        return _parallelize(embedding, ALL_PARALLEL_STYLES["embedding_rowwise"], group)

    def merged_column(self, weights, biases, *, group):
        weight = torch.cat(list(weights))
        bias = None if biases is None or biases[0] is None else torch.cat(list(biases))
        return _parallelize(dense_linear(weight, bias), PackedColwiseParallel(split_factor=len(weights)), group)

    def primitives(self, group):
        return {
            "copy_to": lambda x: _AllReduceBackward.apply(x, group),
            "reduce_from": lambda x: _AllReduceForward.apply(x, group),
        }

    def shards(self, layer):
        bias = getattr(layer, "bias", None)
        return _local(layer.weight), (None if bias is None else _local(bias))

    def parameters(self, layer):
        return [p for p in (layer.weight, getattr(layer, "bias", None)) if p is not None]

    def shard_grads(self, layer):
        bias = getattr(layer, "bias", None)
        return _local(layer.weight.grad), (None if bias is None else _local(bias.grad))

