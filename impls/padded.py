"""A correct impl shaped like ColossalAI's, whose families need different declarations:

- its linear layers (the reference's) reject a split dim the world size does not divide, raising
  at construction on every rank (``uneven_shards=False``, ColossalAI's ``Linear1D_Col/Row``);
- its vocab-parallel embedding accepts any vocabulary: it pads the table with zero rows to a
  multiple of ``PAD_TO`` × the world size and splits the padded table evenly, so the last rank(s)
  hold padding rows (ColossalAI's ``VocabParallelEmbedding1D`` with ``make_vocab_size_divisible_by``).
  Its shards are reported as held, padding included.

It declares both, per family (:attr:`tpconform.impls.protocol.Capabilities.families`), and must pass the
complete default run; ``conformance/families/embedding/bugs/padding_rows_take_grad.py`` breaks its padding.
"""

from __future__ import annotations

import torch
from torch import nn
from tpconform.impls.layers import Collectives
from tpconform.impls.protocol import Capabilities
from tpconform.impls.reference import ReferenceImpl
from tpconform.impls.vocab_parallel import VocabParallelEmbedding

PAD_TO = 8


def _divisible(size: int, group, what: str) -> None:
    world_size = Collectives(group).world_size
    if size % world_size:
        raise ValueError(f"{what}={size} is not divisible by the world size {world_size}")


class PaddedVocabEmbedding(VocabParallelEmbedding):
    """The reference lookup (ids outside a rank's rows masked inside autograd) over a padded table."""

    def __init__(self, weight, *, group=None, comm=None):
        nn.Module.__init__(self)
        self.comm = comm or Collectives(group)
        vocab, dim = weight.shape
        multiple = PAD_TO * self.comm.world_size
        per_rank = -(-vocab // multiple) * multiple // self.comm.world_size
        self.start, self.end = self.comm.rank * per_rank, (self.comm.rank + 1) * per_rank
        table = torch.zeros(per_rank * self.comm.world_size, dim, dtype=weight.dtype)
        table[:vocab] = weight
        self.vocab = vocab
        self.weight = nn.Parameter(table[self.start:self.end].clone())


class PaddedImpl(ReferenceImpl):
    name = "reference-even-padded"
    capabilities = Capabilities(uneven_shards=False,
                                families={"embedding": {"uneven_shards": True, "padded_shards": True}})

    def column(self, weight, bias, *, gather_output, group):
        _divisible(weight.shape[0], group, "out_features")
        return super().column(weight, bias, gather_output=gather_output, group=group)

    def row(self, weight, bias, *, input_is_parallel, group):
        _divisible(weight.shape[1], group, "in_features")
        return super().row(weight, bias, input_is_parallel=input_is_parallel, group=group)

    def vocab_parallel_embedding(self, weight, *, group):
        return PaddedVocabEmbedding(weight, group=group)
