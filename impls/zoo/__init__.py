"""The seeded-bug zoo: wrong implementations the suite must catch, each for the right reason.

Each entry names the bug, the module that plants it (one small file, imported only in workers),
the property that must catch it, and the variants that expose it. ``tests/selftest`` asserts every
entry is caught by its property; ``benchmarks/time_to_find.py`` measures how fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.impls.entries import Entry


@dataclass(frozen=True)
class SeededBug:
    name: str
    module: str
    summary: str
    caught_by: str  # a property name in tpconform.families.linear.verdict.SPEC
    variant: str  # the variant (see tpconform.strategies.VARIANTS) whose test must catch it
    cause: str = ""  # words the failure's "likely cause" line must contain ("" checks nothing)
    symptom: str = "violation"  # "violation": the property itself fails; "crash": the example raises or hangs
    world_sizes: tuple[int, ...] = (1, 2, 3, 4)  # what the self-test searches (the bug may need >= 3)

    @property
    def entry(self) -> Entry:
        return Entry(self.name, f"{self.module}:Impl", self.summary, correct=False)


ZOO: tuple[SeededBug, ...] = (
    # -- shards ------------------------------------------------------------------------------------
    SeededBug("bug-wrong-split-dim", "tpconform.impls.zoo.wrong_split_dim",
              "column splits the weight along the input dim",
              "shards_rebuild_the_dense_weight", "column-gathered", cause="split along the wrong dim"),
    SeededBug("bug-uneven-truncated", "tpconform.impls.zoo.uneven_truncated",
              "non-divisible dims silently truncated (size // world_size per rank)",
              "shards_rebuild_the_dense_weight", "column-gathered", cause="truncated"),
    SeededBug("bug-bias-split-differs", "tpconform.impls.zoo.bias_split_differs",
              "column bias split chunk-style, weight tensor_split-style (non-divisible, world size >= 3)",
              "shards_rebuild_the_dense_weight", "column-gathered", cause="different split",
              world_sizes=(3, 4)),
    SeededBug("bug-full-weight-replicated", "tpconform.impls.zoo.full_weight_replicated",
              "not tensor-parallel: the whole weight on every rank, computed locally",
              "shards_rebuild_the_dense_weight", "column-gathered", cause="whole weight"),
    # -- forward -----------------------------------------------------------------------------------
    SeededBug("bug-column-local-shard", "tpconform.impls.zoo.column_local_shard",
              "column returns only its local shard (no all-gather)",
              "output_shape_and_dtype_match_nn_linear", "column-gathered", cause="without an all-gather"),
    SeededBug("bug-column-gather-wrong-order", "tpconform.impls.zoo.column_gather_wrong_order",
              "column all-gathers the shards in reverse rank order",
              "output_matches_the_dense_layer", "column-gathered", cause="rank order"),
    SeededBug("bug-column-gather-wrong-dim", "tpconform.impls.zoo.column_gather_wrong_dim",
              "column all-gathers along dim 1 (right for 2-D inputs, wrong for 3-D)",
              "output_shape_and_dtype_match_nn_linear", "column-gathered", cause="wrong dim"),
    SeededBug("bug-row-bias-every-rank", "tpconform.impls.zoo.row_bias_every_rank",
              "row adds the bias on every rank, before the all-reduce",
              "output_matches_the_dense_layer", "row-full-input", cause="bias is added on every rank"),
    SeededBug("bug-row-allreduce-missing", "tpconform.impls.zoo.row_allreduce_missing",
              "row never all-reduces its partial outputs",
              "output_matches_the_dense_layer", "row-sliced-input", cause="all-reduce is missing"),
    SeededBug("bug-simulated-collectives", "tpconform.impls.zoo.simulated_collectives",
              "collectives replaced by local computation",
              "output_matches_the_dense_layer", "row-sliced-input", cause="all-reduce is missing"),
    SeededBug("bug-reduce-order-per-rank", "tpconform.impls.zoo.reduce_order_per_rank",
              "row sums the partial outputs in a rank-dependent order (ranks disagree in the last bits)",
              "ranks_agree_on_the_output", "row-full-input", cause="different orders", world_sizes=(3, 4)),
    SeededBug("bug-output-dtype-float32", "tpconform.impls.zoo.output_dtype_float32",
              "row returns float32 for a bfloat16/float16 input",
              "output_shape_and_dtype_match_nn_linear", "row-full-input", cause="not cast back"),
    SeededBug("bug-features-past-32-ignored", "tpconform.impls.zoo.features_past_32_ignored",
              "column multiplies in a fixed tile of 32 input features and ignores the rest",
              "output_matches_the_dense_layer", "column-gathered"),
    SeededBug("bug-rows-past-64-dropped", "tpconform.impls.zoo.rows_past_64_dropped",
              "row multiplies in tiles of 64 batch rows and drops the rows past the last whole tile",
              "output_matches_the_dense_layer", "row-full-input", cause="last whole tile"),
    SeededBug("bug-gather-drops-partial-chunk", "tpconform.impls.zoo.gather_drops_partial_chunk",
              "column all-gathers its output in 128-row chunks and never gathers the last partial chunk",
              "output_matches_the_dense_layer", "column-gathered", cause="last whole tile"),
    SeededBug("bug-math-in-bfloat16", "tpconform.impls.zoo.math_in_bfloat16",
              "column does its matmul in bfloat16 whatever the input dtype",
              "output_matches_the_dense_layer", "column-sharded-output", cause="lower precision"),
    SeededBug("bug-more-than-two-dims", "tpconform.impls.zoo.more_than_two_dims",
              "row restores only the first batch dim of a >2-D input",
              "output_shape_and_dtype_match_nn_linear", "row-full-input", cause="batch dims"),
    SeededBug("bug-noncontiguous-misread", "tpconform.impls.zoo.noncontiguous_misread",
              "row reads a strided input as if it were contiguous",
              "output_matches_the_dense_layer", "row-sliced-input", cause="non-contiguous"),
    SeededBug("bug-view-on-input", "tpconform.impls.zoo.view_on_input",
              "column flattens the batch dims with x.view(-1, in) (raises for permuted/expanded batch dims)",
              "output_matches_the_dense_layer", "column-gathered", symptom="crash", cause=".view()"),
    # -- gradients ---------------------------------------------------------------------------------
    SeededBug("bug-gather-not-differentiable", "tpconform.impls.zoo.gather_not_differentiable",
              "column gathers with a plain all_gather outside autograd (grads lost)",
              "weight_grad_matches_the_dense_layer", "column-gathered", cause="outside autograd"),
    SeededBug("bug-gather-backward-sums", "tpconform.impls.zoo.gather_backward_sums",
              "column gather backward sums the grad across ranks (weight grad world_size × too large)",
              "weight_grad_matches_the_dense_layer", "column-gathered", cause="too large"),
    SeededBug("bug-column-input-grad-not-reduced", "tpconform.impls.zoo.column_input_grad_not_reduced",
              "column input grad not all-reduced",
              "input_grad_matches_the_dense_layer", "column-gathered", cause="all-reduce of the input grad"),
    SeededBug("bug-row-input-grad-not-gathered", "tpconform.impls.zoo.row_input_grad_not_gathered",
              "row with full input: the input grad is not all-gathered",
              "input_grad_matches_the_dense_layer", "row-full-input", cause="all-gather of the input grad"),
    SeededBug("bug-contiguous-copy-reduced-and-discarded", "tpconform.impls.zoo.contiguous_copy_reduced_and_discarded",
              "all-reduce reduces t.contiguous() and returns t: a non-contiguous grad is left un-reduced",
              "input_grad_matches_the_dense_layer", "column-gathered", cause="all-reduce of the input grad",
              world_sizes=(2, 3, 4)),
    SeededBug("bug-weight-grad-averaged", "tpconform.impls.zoo.weight_grad_averaged",
              "row weight grad averaged over the ranks",
              "weight_grad_matches_the_dense_layer", "row-sliced-input", cause="too small"),
    SeededBug("bug-row-bias-grad-reduced", "tpconform.impls.zoo.row_bias_grad_reduced",
              "row all-reduces its replicated bias grad (world_size × too large)",
              "bias_grad_matches_the_dense_layer", "row-full-input", cause="too large"),
    # -- side effects, state, communication --------------------------------------------------------
    SeededBug("bug-input-modified-in-place", "tpconform.impls.zoo.input_modified_in_place",
              "row writes its input slice into the caller's input tensor",
              "inputs_are_left_untouched", "row-full-input"),
    SeededBug("bug-grad-modified-in-place", "tpconform.impls.zoo.grad_modified_in_place",
              "column gather backward zeroes the upstream grad in place",
              "inputs_are_left_untouched", "column-gathered"),
    SeededBug("bug-stale-output-cache", "tpconform.impls.zoo.stale_output_cache",
              "column memoizes its output by input shape (stale output on a second call)",
              "repeated_calls_are_independent", "column-gathered", cause="first call's output"),
    SeededBug("bug-full-weight-gathered", "tpconform.impls.zoo.full_weight_gathered",
              "not tensor-parallel: all-gathers the whole weight and computes locally (numerically right)",
              "communicates_activations_not_weights", "column-gathered", cause="gathers the weight"),
    # -- training ----------------------------------------------------------------------------------
    SeededBug("bug-weight-cached-at-construction", "tpconform.impls.zoo.weight_cached_at_construction",
              "row pre-transposes its weight shard at construction and multiplies by that copy (updates unseen)",
              "training_step_matches_the_dense_layer", "row-full-input", cause="as it was at construction"),
    SeededBug("bug-grad-on-another-tensor", "tpconform.impls.zoo.grad_on_another_tensor",
              "column computes with a copy of its shard and reports that copy's grad (.weight never gets one)",
              "training_step_matches_the_dense_layer", "column-sharded-output", cause="not the SGD step"),
    SeededBug("bug-keeps-master-weight", "tpconform.impls.zoo.keeps_master_weight",
              "column computes the other ranks' output blocks from a hidden copy of the master weight (no all-gather)",
              "training_step_matches_the_dense_layer", "column-gathered", cause="hidden copy",
              world_sizes=(2, 3, 4)),
    SeededBug("bug-keeps-master-weight-silent", "tpconform.impls.zoo.keeps_master_weight",
              "the same hidden master copy, seen by what it does not send: no collective at all",
              "communicates_what_the_other_ranks_need", "column-gathered", cause="hidden copy",
              world_sizes=(2, 3, 4)),
    # -- as training loops use the layer -----------------------------------------------------------
    SeededBug("bug-weight-grad-assigned", "tpconform.impls.zoo.weight_grad_assigned",
              "row assigns its hand-computed weight grad (weight.grad = ...) instead of accumulating it",
              "micro_batches_accumulate_like_the_dense_layer", "row-sliced-input", world_sizes=(1, 2, 3)),
    SeededBug("bug-input-kept-on-module", "tpconform.impls.zoo.input_kept_on_module",
              "column keeps its input on the module for the weight grad (two forwards: the last one wins)",
              "micro_batches_accumulate_like_the_dense_layer", "column-gathered", world_sizes=(1, 2, 3)),
    SeededBug("bug-frozen-input-no-weight-grad", "tpconform.impls.zoo.frozen_input_no_weight_grad",
              "row builds no graph when its input does not require grad: a frozen input trains nothing",
              "a_frozen_input_still_trains_the_layer", "row-full-input", world_sizes=(1, 2, 3)),
    SeededBug("bug-inference-mode-buffer", "tpconform.impls.zoo.inference_mode_buffer",
              "column caches its transposed weight on first use: made under inference_mode, training raises",
              "inference_calls_leave_training_unchanged", "column-sharded-output", world_sizes=(1, 2, 3)),
    # -- the layer as built, reloaded, converted ---------------------------------------------------
    SeededBug("bug-bias-initialised-like-nn-linear", "tpconform.impls.zoo.bias_initialised_like_nn_linear",
              "simple-module layers initialise their bias like nn.Linear (random per rank), not at zero",
              "the_layer_as_built_follows_the_convention", "row-sliced-input", cause="like nn.Linear",
              world_sizes=(1, 2, 3)),
    SeededBug("bug-first-call-restores-built-weight", "tpconform.impls.zoo.first_call_restores_built_weight",
              "column keeps its shard as built in a plain attribute and copies it in at its first call "
              "(a loaded state_dict is overwritten)",
              "a_state_dict_reloads_the_trained_layer", "column-gathered", world_sizes=(1, 2, 3)),
    SeededBug("bug-reduce-dtype-fixed-at-construction", "tpconform.impls.zoo.reduce_dtype_fixed_at_construction",
              "row fixes its all-reduce dtype at construction (wrong after layer.double() / .to(dtype))",
              "a_converted_layer_matches_the_dense_layer", "row-full-input", world_sizes=(1, 2, 3)),
    SeededBug("bug-cast-weight-cached-once", "tpconform.impls.zoo.cast_weight_cached_once",
              "column casts its float32 weight to a 16-bit input's dtype once and reuses the copy "
              "(stale after the optimizer step)",
              "a_mixed_precision_step_matches_the_dense_layer", "column-gathered", cause="cast once",
              world_sizes=(1, 2, 3)),
    # -- crashes and hangs -------------------------------------------------------------------------
    SeededBug("bug-empty-shard-crashes", "tpconform.impls.zoo.empty_shard_crashes",
              "column construction divides by the local shard size (an empty shard raises on one rank)",
              "shards_rebuild_the_dense_weight", "column-gathered", symptom="crash", cause="empty shards"),
    SeededBug("bug-empty-shard-skips-collective", "tpconform.impls.zoo.empty_shard_skips_collective",
              "a row rank with an empty slice skips the all-reduce (the others hang)",
              "output_matches_the_dense_layer", "row-sliced-input", symptom="crash", cause="skips or reorders"),
    SeededBug("bug-empty-batch-crashes", "tpconform.impls.zoo.empty_batch_crashes",
              "column reshape raises on an empty batch",
              "output_matches_the_dense_layer", "column-sharded-output", symptom="crash", cause="batch is empty"),
    # -- forward-only layers (declared: backward=False; impls/limited.py) --------------------------------
    SeededBug("bug-inference-decode-skips-all-reduce", "tpconform.impls.zoo.inference_decode_skips_all_reduce",
              "forward-only row layer (declared) skips the all-reduce on its one-token decode path",
              "output_matches_the_dense_layer", "row-full-input", cause="all-reduce is missing"),
)

# Bugs beyond one layer on the whole world (TP sub-groups, compositions, primitives), each caught by
# its own search in tests/selftest/test_extensions.py; their variant reads "<family>/<detail>".
EXTENSIONS: tuple[SeededBug, ...] = (
    SeededBug("bug-collectives-on-world", "tpconform.impls.zoo.collectives_on_world",
              "the all-reduce runs on the default (WORLD) group, not the TP group it was given",
              "output_matches_the_dense_layer", "subgroups/row-full-input"),
    SeededBug("bug-column-gathers-then-splits", "tpconform.impls.zoo.column_gathers_then_splits",
              "column with gather_output=False all-gathers, then keeps its slice (right values, extra collective)",
              "mlp_forward_uses_one_all_reduce", "mlp/", cause="all-gathers"),
    SeededBug("bug-mlp-partitions-differ", "tpconform.impls.zoo.mlp_partitions_differ",
              "column splits chunk-style, row tensor_split-style: each conforms, the MLP breaks (world size >= 3)",
              "mlp_output_matches_the_dense_mlp", "mlp/", cause="split the hidden dim differently"),
    SeededBug("bug-gather-assumes-contiguous", "tpconform.impls.zoo.gather_assumes_contiguous",
              "gather-from primitive reads a strided/transposed input's storage as if contiguous",
              "primitive_forward_matches_its_dense_meaning", "primitives/gather_from", cause="not contiguous"),
    SeededBug("bug-scatter-backward-local", "tpconform.impls.zoo.scatter_backward_local",
              "scatter-to primitive's backward keeps only this rank's grad slice (no all-gather)",
              "primitive_backward_matches_its_dense_meaning", "primitives/scatter_to", cause="all-gather the grad slices"),
    # bugs that only a declared capability lets the suite reach (impls/limited.py: their correct peers)
    SeededBug("bug-merged-packed-rows-strided", "tpconform.impls.zoo.merged_packed_rows_strided",
              "packed merged column, equal blocks only (declared): each rank takes every world_size-th row of a block",
              "merged_column_shards_hold_each_blocks_slice", "merged/", cause="strided split"),
    SeededBug("bug-inference-merged-bias-first-block-only",
              "tpconform.impls.zoo.inference_merged_bias_first_block_only",
              "forward-only merged QKV column (declared) adds the bias of its first block only",
              "merged_column_output_matches_the_dense_layer", "merged/"),
    SeededBug("bug-copy-to-grad-not-reduced", "tpconform.impls.zoo.copy_to_grad_not_reduced",
              "copy-to and reduce-from only (declared): copy-to's backward does not all-reduce",
              "primitive_backward_matches_its_dense_meaning", "primitives/copy_to", cause="copy-to's backward"),
    SeededBug("bug-reduce-from-in-place", "tpconform.impls.zoo.reduce_from_in_place",
              "reduce-from primitive all-reduces its input tensor in place",
              "primitive_leaves_its_inputs_untouched", "primitives/reduce_from", cause="in place"),
    SeededBug("bug-reduce-from-marks-dirty", "tpconform.impls.zoo.reduce_from_marks_dirty",
              "reduce-from primitive all-reduces its input in place and marks it dirty (raises on a leaf)",
              "primitive_leaves_its_inputs_untouched", "primitives/reduce_from", cause="in place"),
    SeededBug("bug-sp-row-bias-grad-partial", "tpconform.impls.zoo.sp_row_bias_grad_partial",
              "sequence-parallel row leaves its bias grad partial (not reduced over the ranks)",
              "sequence_parallel_grads_match_the_dense_layer", "sequence_parallel/row", cause="partial"),
    SeededBug("bug-sp-row-all-reduces", "tpconform.impls.zoo.sp_row_all_reduces",
              "sequence-parallel row all-reduces: every rank returns the whole sequence, not its shard",
              "sequence_parallel_output_matches_the_dense_layer", "sequence_parallel/row", cause="whole sequence"),
    SeededBug("bug-embedding-ids-clamped", "tpconform.impls.zoo.embedding_ids_clamped",
              "vocab-parallel embedding clamps ids into its rows instead of masking them",
              "embedding_output_matches_the_dense_lookup", "embedding/", cause="clamped"),
    SeededBug("bug-embedding-mask-outside-autograd", "tpconform.impls.zoo.embedding_mask_outside_autograd",
              "vocab-parallel embedding masks via .data: grads of other ranks' ids land in row 0",
              "embedding_weight_grad_matches_the_dense_lookup", "embedding/", cause="outside autograd"),
    SeededBug("bug-padding-rows-take-grad", "tpconform.impls.zoo.padding_rows_take_grad",
              "padded vocab-parallel embedding looks up others' ids in a padding row, masked outside autograd",
              "embedding_weight_grad_matches_the_dense_lookup", "embedding/", cause="padding"),
    SeededBug("bug-merged-split-as-one-block", "tpconform.impls.zoo.merged_split_as_one_block",
              "merged (QKV) column splits the stacked weight as one block",
              "merged_column_shards_hold_each_blocks_slice", "merged/", cause="split as one block"),
    SeededBug("bug-merged-bias-split-as-one-block", "tpconform.impls.zoo.merged_bias_split_as_one_block",
              "merged (QKV) column shards the weight block by block, the bias as one block",
              "merged_column_matches_the_dense_layer", "merged/", cause="bias is split as one block"),
    SeededBug("bug-ce-local-max", "tpconform.impls.zoo.ce_local_max",
              "vocab-parallel cross entropy shifts each rank's logits by its own max (no MAX all-reduce)",
              "cross_entropy_loss_matches_the_dense_loss", "cross_entropy/", cause="its own max"),
    SeededBug("bug-ce-onehot-every-rank", "tpconform.impls.zoo.ce_onehot_every_rank",
              "vocab-parallel cross entropy's backward subtracts the target's one-hot on every rank",
              "cross_entropy_logit_grads_match_the_dense_grads", "cross_entropy/", cause="on every rank"),
    SeededBug("bug-ce-logits-shifted-in-place", "tpconform.impls.zoo.ce_logits_shifted_in_place",
              "vocab-parallel cross entropy subtracts the max from the caller's logits in place",
              "cross_entropy_leaves_its_logits_untouched", "cross_entropy/", cause="in place"),
    # layer bugs of the zoo above, seen through the MLP's gradient properties
    SeededBug("bug-mlp-column-input-grad-not-reduced", "tpconform.impls.zoo.column_input_grad_not_reduced",
              "column input grad not all-reduced, inside the MLP",
              "mlp_input_grad_matches_the_dense_mlp", "mlp/", cause="partial input grad"),
    SeededBug("bug-mlp-row-weight-grad-averaged", "tpconform.impls.zoo.weight_grad_averaged",
              "row weight grad averaged over the ranks, inside the MLP",
              "mlp_parameter_grads_match_the_dense_mlp", "mlp/", cause="divided by the world size"),
)

ENTRIES = tuple(bug.entry for bug in ZOO + EXTENSIONS)
BY_NAME = {bug.name: bug for bug in ZOO + EXTENSIONS}
