"""Bug: the column layer all-gathers its output in chunks of 128 rows (to bound the buffer) and
counts the chunks as ``rows // 128``, at least one: up to 128 rows are one chunk (right), past 128
the last partial chunk is never gathered and its rows come out as zeros.

Exposed by: a gathered column case with more than 128 batch rows, not a multiple of 128 — the
tile-tail class "batch rows past 128", which the random draws (at most 64 rows) never reach and a
covering case does."""

import math

from tpconform.impls.reference import Collectives, ColumnParallelLinear, ReferenceImpl

CHUNK = 128


class ChunkedGather(Collectives):
    def gather_last(self, x, full_size):
        rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
        out = rows.new_zeros(rows.shape[0], full_size)
        for i in range(max(1, rows.shape[0] // CHUNK)):
            chunk = rows[i * CHUNK:(i + 1) * CHUNK]
            out[i * CHUNK:i * CHUNK + chunk.shape[0]] = super().gather_last(chunk, full_size)
        return out.reshape(*x.shape[:-1], full_size)


class Impl(ReferenceImpl):
    name = "bug-gather-drops-partial-chunk"

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, comm=ChunkedGather(group))
