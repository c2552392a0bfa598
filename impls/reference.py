"""The built-in reference impl: the layers of :mod:`tpconform.impls.layers` (and their sequence-parallel,
vocab-parallel and merged forms) behind the impl protocol. The building blocks are re-exported here,
where the seeded bugs of ``impls/zoo`` take them from."""

from __future__ import annotations

from tpconform.families.block.plan import parallelize_block
from tpconform.impls.cross_entropy import vocab_parallel_cross_entropy
from tpconform.impls.layers import (  # noqa: F401 - re-exported for impls/zoo
    Collectives,
    ColumnParallelLinear,
    CopyToParallel,
    GatherFromParallel,
    ReduceFromParallel,
    RowParallelLinear,
    ScatterToParallel,
    _offset,
    partition_sizes,
)
from tpconform.impls.merged import MergedColumnParallelLinear
from tpconform.impls.protocol import Capabilities, TensorParallelImpl
from tpconform.impls.sequence_parallel import SequenceParallelColumn, SequenceParallelRow
from tpconform.impls.vocab_parallel import VocabParallelEmbedding


class ReferenceImpl(TensorParallelImpl):
    """The built-in reference: every option, uneven shards, every dtype."""

    name = "reference"
    version = "1"
    capabilities = Capabilities()

    def column(self, weight, bias, *, gather_output, group):
        return ColumnParallelLinear(weight, bias, gather_output=gather_output, group=group)

    def row(self, weight, bias, *, input_is_parallel, group):
        return RowParallelLinear(weight, bias, input_is_parallel=input_is_parallel, group=group)

    def column_sequence_parallel(self, weight, bias, *, group):
        return SequenceParallelColumn(weight, bias, group=group)

    def row_sequence_parallel(self, weight, bias, *, group):
        return SequenceParallelRow(weight, bias, group=group)

    def vocab_parallel_embedding(self, weight, *, group):
        return VocabParallelEmbedding(weight, group=group)

    def merged_column(self, weights, biases, *, group):
        return MergedColumnParallelLinear(weights, biases, group=group)

    def vocab_parallel_cross_entropy(self, group):
        return vocab_parallel_cross_entropy(group)

    def parallelize_block(self, block, group):
        return parallelize_block(block, group)

    def primitives(self, group):
        comm = Collectives(group)
        return {
            "copy_to": lambda x: CopyToParallel.apply(x, comm),
            "reduce_from": lambda x: ReduceFromParallel.apply(x, comm),
            "scatter_to": lambda x: ScatterToParallel.apply(x, comm),
            "gather_from": lambda x: GatherFromParallel.apply(x, x.shape[-1] * comm.world_size, comm),
        }
