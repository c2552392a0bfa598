"""The mlp family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-column-gathers-then-splits", "tpconform.families.mlp.bugs.column_gathers_then_splits",
              "column with gather_output=False all-gathers, then keeps its slice (right values, extra collective)",
              "mlp_forward_uses_one_all_reduce", "mlp/", cause="all-gathers"),
    SeededBug("bug-mlp-partitions-differ", "tpconform.families.mlp.bugs.mlp_partitions_differ",
              "column splits chunk-style, row tensor_split-style: each conforms, the MLP breaks (world size >= 3)",
              "mlp_output_matches_the_dense_mlp", "mlp/", cause="split the hidden dim differently"),
    SeededBug("bug-mlp-column-input-grad-not-reduced", "tpconform.impls.zoo.column_input_grad_not_reduced",
              "column input grad not all-reduced, inside the MLP",
              "mlp_input_grad_matches_the_dense_mlp", "mlp/", cause="partial input grad"),
    SeededBug("bug-mlp-row-weight-grad-averaged", "tpconform.impls.zoo.weight_grad_averaged",
              "row weight grad averaged over the ranks, inside the MLP",
              "mlp_parameter_grads_match_the_dense_mlp", "mlp/", cause="divided by the world size"),
)
