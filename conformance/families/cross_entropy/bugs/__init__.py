"""The cross_entropy family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-ce-local-max", "tpconform.families.cross_entropy.bugs.ce_local_max",
              "vocab-parallel cross entropy shifts each rank's logits by its own max (no MAX all-reduce)",
              "cross_entropy_loss_matches_the_dense_loss", "cross_entropy/", cause="its own max"),
    SeededBug("bug-ce-onehot-every-rank", "tpconform.families.cross_entropy.bugs.ce_onehot_every_rank",
              "vocab-parallel cross entropy's backward subtracts the target's one-hot on every rank",
              "cross_entropy_logit_grads_match_the_dense_grads", "cross_entropy/", cause="on every rank"),
    SeededBug("bug-ce-logits-shifted-in-place", "tpconform.families.cross_entropy.bugs.ce_logits_shifted_in_place",
              "vocab-parallel cross entropy subtracts the max from the caller's logits in place",
              "cross_entropy_leaves_its_logits_untouched", "cross_entropy/", cause="in place"),
)
