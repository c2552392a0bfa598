"""The seeded-bug zoo: wrong implementations the suite must catch, each for the right reason.

Each entry names the bug, the module that plants it (one small file, imported only in workers),
the property that must catch it, and the variants that expose it. ``tests/selftest`` asserts every
entry is caught by its property; ``benchmarks/time_to_find.py`` measures how fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from impls.registry import Entry


@dataclass(frozen=True)
class SeededBug:
    name: str
    module: str
    summary: str
    caught_by: str  # a property name in conformance.properties.SPEC
    variant: str  # the variant (see strategies.VARIANTS) whose test must catch it

    @property
    def entry(self) -> Entry:
        return Entry(self.name, f"{self.module}:Impl", self.summary, correct=False)


ZOO: tuple[SeededBug, ...] = (
    SeededBug("bug-column-local-shard", "impls.zoo.column_local_shard",
              "column returns only its local shard (no all-gather)",
              "output_shape_and_dtype_match_nn_linear", "column-gathered"),
    SeededBug("bug-row-bias-every-rank", "impls.zoo.row_bias_every_rank",
              "row adds the bias on every rank, before the all-reduce",
              "output_matches_the_dense_layer", "row-full-input"),
    SeededBug("bug-wrong-split-dim", "impls.zoo.wrong_split_dim",
              "column splits the weight along the input dim",
              "shards_rebuild_the_dense_weight", "column-gathered"),
    SeededBug("bug-simulated-collectives", "impls.zoo.simulated_collectives",
              "collectives replaced by local computation",
              "output_matches_the_dense_layer", "row-sliced-input"),
    SeededBug("bug-uneven-truncated", "impls.zoo.uneven_truncated",
              "non-divisible dims silently truncated (size // world_size per rank)",
              "shards_rebuild_the_dense_weight", "column-gathered"),
)

ENTRIES = tuple(bug.entry for bug in ZOO)
BY_NAME = {bug.name: bug for bug in ZOO}
