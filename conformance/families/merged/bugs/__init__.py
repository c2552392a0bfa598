"""The merged family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-merged-packed-rows-strided", "tpconform.families.merged.bugs.merged_packed_rows_strided",
              "packed merged column, equal blocks only (declared): each rank takes every world_size-th row of a block",
              "merged_column_shards_hold_each_blocks_slice", "merged/", cause="strided split"),
    SeededBug("bug-inference-merged-bias-first-block-only",
              "tpconform.families.merged.bugs.inference_merged_bias_first_block_only",
              "forward-only merged QKV column (declared) adds the bias of its first block only",
              "merged_column_output_matches_the_dense_layer", "merged/"),
    SeededBug("bug-merged-split-as-one-block", "tpconform.families.merged.bugs.merged_split_as_one_block",
              "merged (QKV) column splits the stacked weight as one block",
              "merged_column_shards_hold_each_blocks_slice", "merged/", cause="split as one block"),
    SeededBug("bug-merged-bias-split-as-one-block", "tpconform.families.merged.bugs.merged_bias_split_as_one_block",
              "merged (QKV) column shards the weight block by block, the bias as one block",
              "merged_column_matches_the_dense_layer", "merged/", cause="bias is split as one block"),
)
