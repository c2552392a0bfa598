"""The model family's seeded bugs: plans that parallelise the tiny model wrong, each caught by its own
property for the right reason (``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its
module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-model-lm-head-untied", "tpconform.families.model.bugs.lm_head_untied",
              "model plan shards the tied embedding and lm_head but never re-ties them (the lm_head holds a copy)",
              "model_tied_weights_stay_tied", "model/plan", cause="untied"),
    SeededBug("bug-model-loss-own-softmax", "tpconform.families.model.bugs.loss_own_softmax",
              "model plan's vocab-parallel loss takes each rank's own softmax (the log-sum-exp never reduced)",
              "model_loss_matches_the_dense_model", "model/plan", cause="log-sum-exp"),
    SeededBug("bug-model-embedding-ids-not-masked", "tpconform.families.model.bugs.embedding_ids_not_masked",
              "model plan shards the embedding on the vocab by hand and looks up out-of-shard ids unmasked",
              "model_logits_match_the_dense_model", "model/plan", cause="masked"),
    SeededBug("bug-model-tied-grad-misses-embedding", "tpconform.families.model.bugs.tied_grad_misses_embedding",
              "model plan's embedding looks up a detached weight: the tied weight's grad is the lm_head's alone",
              "model_parameter_grads_match_the_dense_model", "model/plan", cause="embedding's contribution"),
    SeededBug("bug-model-heads-unchecked", "tpconform.families.model.bugs.heads_unchecked",
              "model plan never checks the blocks' head counts and FFN width against the world size",
              "model_refuses_what_its_plan_cannot_express", "model/plan", cause="accepted"),
    SeededBug("bug-model-tp-plan-lm-head-local", "tpconform.families.model.bugs.tp_plan_lm_head_local",
              "model tp_plan makes the lm_head 'colwise' (a local vocab shard as a plain tensor) without loss "
              "parallel", "model_logits_match_the_dense_model", "model/tp_plan", cause="local vocab shard", symptom="crash"),
)
