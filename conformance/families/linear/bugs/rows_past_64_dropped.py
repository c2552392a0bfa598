"""Bug: the row layer multiplies its input in tiles of 64 rows and drops the tail: a batch of up to
64 rows is one partial tile (right), past 64 only whole tiles are computed and the rows after the
last whole tile come out as the bias alone (a hand-tiled kernel that forgot its remainder loop).

Exposed by: a row case with more than 64 batch rows, not a multiple of 64 — the tile-tail class
"batch rows past 64", which the random draws (at most 64 rows) never reach and a covering case does."""

import math

import torch
import torch.nn.functional as F
from tpconform.impls.reference import ReduceFromParallel, ReferenceImpl, RowParallelLinear, ScatterToParallel

TILE = 64


class TiledRow(RowParallelLinear):
    def forward(self, x):
        if not self.input_is_parallel:
            x = ScatterToParallel.apply(x, self.comm)
        rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
        n = rows.shape[0]
        if n <= TILE:  # one partial tile
            tiles = [F.linear(rows, self.weight)]
        else:  # whole tiles only: the tail is never computed
            tiles = [F.linear(rows[i:i + TILE], self.weight) for i in range(0, n - n % TILE, TILE)]
            tiles.append(rows.new_zeros(n % TILE, self.weight.shape[0]))
        y = torch.cat(tiles).reshape(*x.shape[:-1], self.weight.shape[0])
        y = ReduceFromParallel.apply(y, self.comm)
        return y if self.bias is None else y + self.bias


class Impl(ReferenceImpl):
    name = "bug-rows-past-64-dropped"

    def row(self, weight, bias, *, input_is_parallel, group):
        return TiledRow(weight, bias, input_is_parallel=input_is_parallel, group=group)
