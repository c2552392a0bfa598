"""Reference merged column layer (QKV, gate-up): several output blocks, each sharded on its own.

Given block weights ``W_b [out_b, in]`` (and biases), rank ``r`` holds ``[W_0 rows_r; W_1 rows_r; …]``
— its slice of *every* block, in block order — so its sharded output is ``[q_r, k_r, v_r]`` and
each block can be split off locally. Splitting the concatenated weight as one block would hand
rank 0 all of ``q``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tpconform.impls.layers import Collectives, CopyToParallel, _offset


def block_rows(comm: Collectives, t: torch.Tensor) -> torch.Tensor:
    """This rank's rows of one block (``torch.tensor_split`` style)."""
    sizes = comm.sizes(t.shape[0])
    return t.narrow(0, _offset(sizes, comm.rank), sizes[comm.rank])


class MergedColumnParallelLinear(nn.Module):
    def __init__(self, weights, biases=None, *, group=None, comm=None):
        super().__init__()
        self.comm = comm or Collectives(group)
        self.weight = nn.Parameter(torch.cat([block_rows(self.comm, w) for w in weights]).clone())
        self.bias = None if biases is None else nn.Parameter(
            torch.cat([block_rows(self.comm, b) for b in biases]).clone())

    def forward(self, x):
        return F.linear(CopyToParallel.apply(x, self.comm), self.weight, self.bias)
