"""The block family's seeded bugs: plans that parallelise the dense block wrong, each caught by its own
property for the right reason (``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its
module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-block-heads-not-divided", "tpconform.families.block.bugs.heads_not_divided",
              "block plan shards wq/wk/wv by heads but leaves the attention's head counts global",
              "block_output_matches_the_dense_block", "block/", cause="global head counts", symptom="crash"),
    SeededBug("bug-block-wo-colwise", "tpconform.families.block.bugs.wo_colwise",
              "block plan makes the output projection wo column-parallel instead of row-parallel",
              "block_output_matches_the_dense_block", "block/", cause="row-parallel", symptom="crash"),
    SeededBug("bug-block-kv-heads-split-below-ranks", "tpconform.families.block.bugs.kv_heads_split_below_ranks",
              "block plan accepts fewer kv heads than ranks and splits them anyway (fails mid-forward)",
              "block_refuses_what_its_plan_cannot_express", "block/", cause="fewer than ranks"),
    SeededBug("bug-block-norm-grads-reduced", "tpconform.families.block.bugs.norm_grads_reduced",
              "block plan all-reduces the replicated norms' weight grads without sequence parallelism",
              "block_parameter_grads_match_the_dense_block", "block/", cause="all-reduced"),
    SeededBug("bug-block-ffn-input-grad-partial", "tpconform.families.block.bugs.ffn_input_grad_partial",
              "block plan shards w1/w3 by hand with no copy-to: the FFN input grad stays partial",
              "block_input_grad_matches_the_dense_block", "block/", cause="partial"),
    SeededBug("bug-block-ffn-gathers-hidden", "tpconform.families.block.bugs.ffn_gathers_hidden",
              "block plan gathers the FFN's hidden activations (right values, two extra all-gathers)",
              "block_forward_runs_the_collectives_its_plan_implies", "block/", cause="all-gathers"),
    SeededBug("bug-block-sp-norm-grads-not-reduced", "tpconform.families.block.bugs.sp_norm_grads_not_reduced",
              "block plan under sequence parallelism leaves the norms plain: their weight grads never all-reduced",
              "block_parameter_grads_match_the_dense_block", "block/", cause="not all-reduced"),
    SeededBug("bug-block-sp-all-reduce-then-slice", "tpconform.families.block.bugs.sp_all_reduce_then_slice",
              "block plan under sequence parallelism all-reduces each sublayer's output and slices its shard "
              "(right values, an all-reduce where a reduce-scatter belongs)",
              "block_forward_runs_the_collectives_its_plan_implies", "block/", cause="reduce-scatter"),
    SeededBug("bug-block-stale-norm-weight", "tpconform.families.block.bugs.stale_norm_weight",
              "block plan computes the norms with weights cached at parallelise time (stale after a step)",
              "block_second_pass_after_an_optimizer_step_matches", "block/", cause="stale"),
)
