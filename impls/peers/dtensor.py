"""PyTorch DTensor tensor parallelism as a peer: ``parallelize_module`` on a dense ``nn.Linear`` / ``nn.Embedding``.

How the protocol maps onto DTensor TP (torch.distributed.tensor.parallel.style):

- column, ``gather_output=True``  -> ``ColwiseParallel(output_layouts=Replicate())``
- column, ``gather_output=False`` -> ``ColwiseParallel()`` (output ``Shard(-1)``, returned local)
- row, ``input_is_parallel=False`` -> ``RowwiseParallel(input_layouts=Replicate())``
- row, ``input_is_parallel=True``  -> ``RowwiseParallel()`` (input ``Shard(-1)``)
- sequence-parallel column -> ``ColwiseParallel(input_layouts=Shard(0))`` (the sequence shard is
  all-gathered forward, its grad reduce-scattered backward; output ``Shard(-1)``, returned local)
- sequence-parallel row    -> ``RowwiseParallel(output_layouts=Shard(0))`` (input ``Shard(-1)``; the
  partial outputs reduce-scattered along the sequence)
  These are torch's documented sequence-parallel pairing (its docs use ``Shard(1)`` for
  ``[batch, seq, hidden]``; the protocol's sequence is dim 0). The ``SequenceParallel`` style itself
  is for norms and dropout (replicated parameters, activations sharded on the sequence): no family
  of the protocol is such a layer, so it is not used.
- vocab-parallel embedding -> ``RowwiseParallel(input_layouts=Replicate())`` on ``nn.Embedding``
  (torch's documented embedding sharding: the table's rows ``Shard(0)``, the ids replicated, the
  partial lookups all-reduced; ``torch.chunk`` shards, so any vocabulary size)
- the MLP family is the column (``gather_output=False``) and row (``input_is_parallel=True``) layers
  above, as torch's docs pair Colwise and Rowwise for a feed-forward block.

Not offered: the primitives (torch has no copy-to / reduce-from / scatter-to / gather-from autograd
functions; DTensor expresses them as redistributions inside its layers, and
``torch.distributed.nn.functional.all_reduce``'s backward is an all-reduce, not reduce-from's
identity: the ``distnn`` peer checks dist.nn's functions as the two primitives they can express), merged column layers (no style shards several output blocks on their own), the vocab-parallel
cross entropy (``loss_parallel()`` must be active around the backward too, which the protocol's loss
function does not run).

The reference weights are loaded into a dense ``nn.Linear`` in the example's dtype, which
``parallelize_module`` then shards over a 1-D CPU (Gloo) device mesh of the group it is given
(``DeviceMesh.from_group``). Shards are
``torch.chunk`` style, so uneven dims are supported (a trailing rank may hold an empty shard).
Parameters are DTensors: shards and grads are read back with ``to_local()``.

One adaptation, documented in FIELD-NOTES: a plain local input to ``RowwiseParallel`` is wrapped
with ``DTensor.from_local`` assuming even shards, which is wrong for uneven dims. ``forward`` wraps
a sliced row input itself, with the true global shape and a stride that describes the input's
memory layout; that is how DTensor TP documents feeding an unevenly sharded input, not a correction
of its result.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
from tpconform.impls.peers import Peer
from tpconform.impls.protocol import Capabilities, TensorParallelImpl
from tpconform.spec.partition import chunk_leaves_a_rank_empty

# CI runs shards and forward at world sizes 1-2 (~40 s: each of its crashes restarts a group, and each example of
# its known hang costs the entry's timeout_s, 4 s; this scope hits every entry it applies to, the hang 8 times, so
# none is stale); TPCONFORM_PEERS_FULL=1 runs the defaults (~2-3.5 min).
PEER = Peer(summary="PyTorch DTensor TP: Colwise/RowwiseParallel on nn.Linear", requires="", distribution="torch",
            ci_scope=("--world-sizes=1-2", "--tp-timeout=20", "tests/properties/test_shards.py",
                      "tests/properties/test_forward.py"))

_meshes: dict = {}


def _mesh(group):
    """The 1-D CPU mesh over the TP group the suite gives (WORLD or a sub-group), made once."""
    ranks = tuple(dist.get_process_group_ranks(group))
    if ranks not in _meshes:
        _meshes[ranks] = DeviceMesh.from_group(group, "cpu")
    return _meshes[ranks]


def _local(t):
    return t.to_local() if isinstance(t, DTensor) else t


def _global_stride(x: torch.Tensor, shape) -> tuple[int, ...]:
    """The stride ``from_local`` is told for the global tensor of ``shape`` whose last-dim shard is
    ``x``: dense, in the order ``x``'s dims are laid out in memory (an expanded, stride-0 dim stays 0).
    Declaring a contiguous stride for a non-contiguous shard (batch dims permuted, a transposed input)
    misdescribes it, and DTensor then views it as if it were contiguous and fails."""
    order = sorted((d for d in range(x.dim()) if x.stride(d) or x.shape[d] <= 1), key=lambda d: (x.stride(d), -d))
    stride, step = [0] * x.dim(), 1
    for d in order:
        stride[d] = step
        step *= max(shape[d], 1)
    return tuple(stride)


class Impl(TensorParallelImpl):
    """DTensor TP on a dense ``nn.Linear``: every option, uneven shards, every dtype."""

    name = "dtensor"
    version = str(torch.__version__)
    capabilities = Capabilities(uneven_shards=True)  # every family: torch.chunk shards

    def _dense(self, weight, bias):
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    def column(self, weight, bias, *, gather_output, group):
        style = ColwiseParallel(output_layouts=Replicate()) if gather_output else ColwiseParallel()
        return parallelize_module(self._dense(weight, bias), _mesh(group), style)

    def row(self, weight, bias, *, input_is_parallel, group):
        style = RowwiseParallel() if input_is_parallel else RowwiseParallel(input_layouts=Replicate())
        layer = parallelize_module(self._dense(weight, bias), _mesh(group), style)
        layer.tp_sliced_input = input_is_parallel
        return layer

    def column_sequence_parallel(self, weight, bias, *, group):
        return parallelize_module(self._dense(weight, bias), _mesh(group), ColwiseParallel(input_layouts=Shard(0)))

    def row_sequence_parallel(self, weight, bias, *, group):
        layer = parallelize_module(self._dense(weight, bias), _mesh(group), RowwiseParallel(output_layouts=Shard(0)))
        layer.tp_sliced_input = True
        return layer

    def vocab_parallel_embedding(self, weight, *, group):
        embedding = nn.Embedding(weight.shape[0], weight.shape[1], dtype=weight.dtype)
        with torch.no_grad():
            embedding.weight.copy_(weight)
        return parallelize_module(embedding, _mesh(group), RowwiseParallel(input_layouts=Replicate()))

    def forward(self, layer, x):
        if getattr(layer, "tp_sliced_input", False):
            shape = torch.Size([*x.shape[:-1], layer.in_features])
            if chunk_leaves_a_rank_empty(layer.in_features, layer.weight.device_mesh.size()):
                # the global stride told to from_local must be the same on every rank, and an empty slice's strides
                # say nothing of the layout (a permuted batch: (3, 1, 1) on the empty rank, (1, 2, 1) on rank 0: DTensor
                # then runs different collectives on each, a SIGABRT in Gloo; contiguous() leaves an empty tensor's
                # strides as they are): every rank hands a contiguous slice and says dense, from the shape alone
                x, stride = x.contiguous(), torch.empty(shape, device="meta").stride()
            else:
                stride = _global_stride(x, shape)
            x = DTensor.from_local(x, layer.weight.device_mesh, [Shard(-1)], shape=shape, stride=stride)
        return layer(x)

    def shards(self, layer):
        bias = getattr(layer, "bias", None)  # nn.Embedding has none
        return _local(layer.weight), (None if bias is None else _local(bias))

    def parameters(self, layer):
        return [p for p in (layer.weight, getattr(layer, "bias", None)) if p is not None]  # DTensors; shards() are local views

    def shard_grads(self, layer):
        bias = getattr(layer, "bias", None)
        return _local(layer.weight.grad), (None if bias is None else _local(bias.grad))
