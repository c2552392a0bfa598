"""The replicated_norm family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-norm-weight-grad-not-reduced", "tpconform.families.replicated_norm.bugs.weight_grad_not_reduced",
              "sequence-parallel RMSNorm leaves its replicated weight's grad partial (Megatron-LM #1446)",
              "replicated_norm_weight_grads_are_identical_on_every_rank", "replicated_norm/", cause="partial"),
    SeededBug("bug-norm-weight-grad-averaged", "tpconform.families.replicated_norm.bugs.weight_grad_averaged",
              "sequence-parallel RMSNorm all-reduces its weight grad, then divides it by the world size",
              "replicated_norm_weight_grad_is_the_dense_grad", "replicated_norm/", cause="divided by the world size"),
    SeededBug("bug-norm-weight-grad-summed-in-rank-order",
              "tpconform.families.replicated_norm.bugs.weight_grad_summed_in_rank_order",
              "sequence-parallel RMSNorm all-gathers the partial weight grads and sums them from its own rank on",
              "replicated_norm_weight_grads_are_identical_on_every_rank", "replicated_norm/", cause="own order",
              world_sizes=(3, 4)),
    SeededBug("bug-norm-backward-drops-the-statistic", "tpconform.families.replicated_norm.bugs.backward_drops_the_statistic",
              "RMSNorm whose backward treats 1/sqrt(mean(x²) + eps) as a constant",
              "replicated_norm_matches_the_dense_norm", "replicated_norm/", cause="as a constant"),
)
