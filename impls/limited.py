"""Correct impls that declare less than everything, each shaped like a real library's limit:

- :class:`ForwardOnlyImpl` — inference layers (vLLM's, a ``no_grad`` path): parameters that do not require
  grad and a forward that refuses to build an autograd graph, so no backward exists. It declares
  ``Capabilities(backward=False)``: the suite checks its forward properties only;
- :class:`EqualBlocksImpl` — a merged (QKV, gate-up) layer in a packed layout (``[n_blocks, rows, in]``),
  which can only express blocks of one size and raises on any other. It declares
  ``families={"merged": {"equal_blocks": True}}``;
- :class:`TwoPrimitivesImpl` — copy-to and reduce-from only (transformers' TP). It declares
  ``families={"primitives": {"primitives": ("copy_to", "reduce_from")}}``.

Each passes what it declares; its seeded bugs are in ``impls/zoo`` (``inference_row_bias_every_rank``,
``merged_packed_rows_strided``, ``copy_to_grad_not_reduced``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tpconform.impls.layers import Collectives, CopyToParallel, ReduceFromParallel
from tpconform.impls.protocol import Capabilities
from tpconform.impls.reference import ReferenceImpl


def inference_only(layer: nn.Module) -> nn.Module:
    """``layer`` with parameters that never require grad, as an inference engine loads them."""
    return layer.requires_grad_(False)


class ForwardOnlyImpl(ReferenceImpl):
    """The reference layers as an inference engine runs them: no grads, no backward."""

    name = "reference-forward-only"
    capabilities = Capabilities(backward=False)

    def column(self, weight, bias, *, gather_output, group):
        return inference_only(super().column(weight, bias, gather_output=gather_output, group=group))

    def row(self, weight, bias, *, input_is_parallel, group):
        return inference_only(super().row(weight, bias, input_is_parallel=input_is_parallel, group=group))

    def column_sequence_parallel(self, weight, bias, *, group):
        return inference_only(super().column_sequence_parallel(weight, bias, group=group))

    def row_sequence_parallel(self, weight, bias, *, group):
        return inference_only(super().row_sequence_parallel(weight, bias, group=group))

    def vocab_parallel_embedding(self, weight, *, group):
        return inference_only(super().vocab_parallel_embedding(weight, group=group))

    def merged_column(self, weights, biases, *, group):
        return inference_only(super().merged_column(weights, biases, group=group))

    def forward(self, layer, x):
        if torch.is_grad_enabled():
            raise RuntimeError("inference-only layer: backward is not supported (call it under torch.no_grad())")
        return layer(x)


class PackedMergedColumn(nn.Module):
    """A merged column layer over equal blocks in a packed layout: the blocks stacked ``[n, rows, in]``,
    rank ``r`` holding ``[:, r·k:(r+1)·k]`` of every block (``k = rows / world_size``)."""

    def __init__(self, weights, biases=None, *, group=None):
        super().__init__()
        self.comm = Collectives(group)
        if len({w.shape[0] for w in weights}) != 1:
            raise ValueError(f"packed merged layer: blocks must be of equal size, got {[w.shape[0] for w in weights]}")
        ws, rows = self.comm.world_size, weights[0].shape[0]
        if rows % ws:
            raise ValueError(f"packed merged layer: {rows} rows a block do not divide by the world size {ws}")
        self.weight = nn.Parameter(self.packed_rows(torch.stack(weights)).clone())
        self.bias = None if biases is None else nn.Parameter(self.packed_rows(torch.stack(biases)).clone())

    def packed_rows(self, packed: torch.Tensor) -> torch.Tensor:
        """This rank's rows of every block of ``packed`` (``[n, rows, ...]``), in block order."""
        n, rows = packed.shape[:2]
        k = rows // self.comm.world_size
        return packed.view(n, self.comm.world_size, k, *packed.shape[2:])[:, self.comm.rank].reshape(
            n * k, *packed.shape[2:])

    def forward(self, x):
        return F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)


class EqualBlocksImpl(ReferenceImpl):
    """The reference, with a packed merged layer that takes equal blocks only (and says so)."""

    name = "reference-equal-blocks"
    capabilities = Capabilities(families={"merged": {"equal_blocks": True}})

    def merged_column(self, weights, biases, *, group):
        return PackedMergedColumn(weights, biases, group=group)


class TwoPrimitivesImpl(ReferenceImpl):
    """The reference, offering copy-to and reduce-from only (and saying so)."""

    name = "reference-two-primitives"
    capabilities = Capabilities(families={"primitives": {"primitives": ("copy_to", "reduce_from")}})

    def primitives(self, group):
        comm = Collectives(group)
        return {"copy_to": lambda x: CopyToParallel.apply(x, comm),
                "reduce_from": lambda x: ReduceFromParallel.apply(x, comm)}
