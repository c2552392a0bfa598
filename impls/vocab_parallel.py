"""Reference vocab-parallel embedding: the table's rows (the vocabulary) sharded over the ranks.

Each rank looks up the ids that fall in its rows, zeroes the positions of the ids it does not hold
(the zeroing is part of the graph, so their grads are zero too), and the partial embeddings are
all-reduced (:class:`ReduceFromParallel`). Rows are split ``torch.tensor_split``-style.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tpconform.impls.layers import Collectives, ReduceFromParallel, _offset


class VocabParallelEmbedding(nn.Module):
    def __init__(self, weight, *, group=None, comm=None):
        super().__init__()
        self.comm = comm or Collectives(group)
        sizes, rank = self.comm.sizes(weight.shape[0]), self.comm.rank
        self.start, self.end = _offset(sizes, rank), _offset(sizes, rank) + sizes[rank]
        self.weight = nn.Parameter(weight[self.start:self.end].clone())

    def local_lookup(self, ids):
        """This rank's partial embeddings: its rows' vectors, zero where an id is not in its rows."""
        outside = (ids < self.start) | (ids >= self.end)
        local = torch.where(outside, torch.zeros_like(ids), ids - self.start)
        if self.weight.shape[0] == 0:  # an empty shard holds no id: an all-zero partial of the right shape
            return self.weight.sum() * 0 + torch.zeros(*ids.shape, self.weight.shape[1], dtype=self.weight.dtype,
                                                        device=self.weight.device)
        return F.embedding(local, self.weight) * (~outside).unsqueeze(-1).to(self.weight.dtype)

    def forward(self, ids):
        return ReduceFromParallel.apply(self.local_lookup(ids), self.comm)
