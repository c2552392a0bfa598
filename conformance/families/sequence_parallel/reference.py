"""The reference's sequence-parallel layers (``impl.column_sequence_parallel`` / ``row_sequence_parallel``,
declared in ``tpconform.impls.protocol``), composed into ``tpconform.impls.reference.ReferenceImpl``."""

from __future__ import annotations

from tpconform.impls.sequence_parallel import SequenceParallelColumn, SequenceParallelRow


class Reference:
    def column_sequence_parallel(self, weight, bias, *, group):
        return SequenceParallelColumn(weight, bias, group=group)

    def row_sequence_parallel(self, weight, bias, *, group):
        return SequenceParallelRow(weight, bias, group=group)
