"""The sequence_parallel family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-sp-row-bias-grad-partial", "tpconform.families.sequence_parallel.bugs.sp_row_bias_grad_partial",
              "sequence-parallel row leaves its bias grad partial (not reduced over the ranks)",
              "sequence_parallel_grads_match_the_dense_layer", "sequence_parallel/row", cause="partial"),
    SeededBug("bug-sp-row-all-reduces", "tpconform.families.sequence_parallel.bugs.sp_row_all_reduces",
              "sequence-parallel row all-reduces: every rank returns the whole sequence, not its shard",
              "sequence_parallel_output_matches_the_dense_layer", "sequence_parallel/row", cause="whole sequence"),
)
