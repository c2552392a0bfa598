"""The embedding family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-embedding-ids-clamped", "tpconform.families.embedding.bugs.embedding_ids_clamped",
              "vocab-parallel embedding clamps ids into its rows instead of masking them",
              "embedding_output_matches_the_dense_lookup", "embedding/", cause="clamped"),
    SeededBug("bug-embedding-mask-outside-autograd", "tpconform.families.embedding.bugs.embedding_mask_outside_autograd",
              "vocab-parallel embedding masks via .data: grads of other ranks' ids land in row 0",
              "embedding_weight_grad_matches_the_dense_lookup", "embedding/", cause="outside autograd"),
    SeededBug("bug-padding-rows-take-grad", "tpconform.families.embedding.bugs.padding_rows_take_grad",
              "padded vocab-parallel embedding looks up others' ids in a padding row, masked outside autograd",
              "embedding_weight_grad_matches_the_dense_lookup", "embedding/", cause="padding"),
)
