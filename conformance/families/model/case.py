"""The model family's case: a tiny whole model's config (embedding -> blocks -> final norm -> lm_head ->
cross entropy), plain data that crosses to the workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.spec.plain_case import PlainCase

# The impl's optional methods this family needs, declared here (the protocol has no line for them); an impl
# offers any of them (each is checked under its own variant):
#     impl.parallelize_model(model, group) -> module                       (variant "plan")
#     impl.model_tp_plan(model) -> {module-name pattern: style name}       (variant "tp_plan")
#     impl.build_tp_model(model, group) -> (module, name map)              (variant "builder")
# ``build_tp_model`` makes the impl's own TP model (a library's model class, Megatron-style layers) from the
# dense model's weights; its name map is the block family's (``families/block/name_map.py``): {dense name:
# (their parameter name, sharding)}, every dense name of ``model.named_parameters(remove_duplicate=False)``
# (tied: ``output.weight`` too, naming the parameter that serves both uses). Its module is called as a plan's is
# (the whole ids in; logits whole, carrying ``tp_dense_slice``, or a DTensor), its loss is ``module.loss_fn``
# when it has one, and no sequence parallelism is asked of it.
# ``model`` is the suite's dense model (``dense.Model``, in the case's dtype, torchtitan's names:
# ``tok_embeddings``, ``layers.<i>`` (the block family's dense block), ``norm``, ``output``; ``model.config``
# is the case: ``tied``, ``loss_parallel``, ``sequence_parallel``, ``vocab`` ...) on every rank of ``group``. ``parallelize_model``
# returns the parallelised module, called on the whole token ids; its logits are a plain tensor (whole, or
# carrying ``tp_dense_slice``) or a DTensor; the loss is ``module.loss_fn(logits, targets)`` (the dense
# model's mean cross entropy unless the plan replaces it), computed with the backward inside torch's
# ``loss_parallel()`` when ``config.loss_parallel``. ``model_tp_plan`` returns an HF-style plan of style
# names (``tp_plan.STYLES``) the suite applies with torch's DTensor styles. Under ``config.sequence_parallel``
# the module is still given the whole ids and returns the logits as above; between the embedding and the
# lm_head the activations are its to shard on the sequence (the norms' replicated weights then see only
# their shard's tokens: their grads must be summed over the ranks). A config the plan cannot
# express must raise while parallelising. Neither offered (or ``None`` returned): the family is skipped.
OFFERED_BY = "parallelize_model / model_tp_plan / build_tp_model"
HANDED_IN = ("plan", "tp_plan", "builder")  # the variants: which of the three ways in the example checks
HOW = {"plan": "parallelize_model", "tp_plan": "model_tp_plan", "builder": "build_tp_model"}


@dataclass(frozen=True)
class ModelCase(PlainCase):
    world_size: int
    handed_in: str  # "plan" (parallelize_model), "tp_plan" (model_tp_plan) or "builder" (build_tp_model)
    batch: int
    seq: int
    vocab: int
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int  # divides n_heads
    head_dim: int  # even
    ffn: int
    tied: bool  # the lm_head's weight is the embedding's (one parameter)
    loss_parallel: bool  # the logits stay sharded on the vocab; the loss under torch's loss_parallel()
    bias: bool
    dtype: str
    seed: int = 0
    # each rank holds its sequence shard of the activations between the embedding and the lm_head (torchtitan's
    # SequenceParallel layout; every block's ``sequence_parallel`` and ``seq_len`` say so to the plan): the
    # plan variant only (transformers' style names have no input-layout step to gather a sequence shard)
    sequence_parallel: bool = False

    @property
    def empty_vocab_shard(self) -> bool:
        """Whether a rank holds no vocab row when the vocab is split as ``torch.chunk`` (and DTensor) split it:
        ``ceil(vocab/p)`` rows per rank, the last ranks what is left (e.g. 2 rows over 3 ranks: 1, 1, 0)."""
        p = self.world_size
        return (p - 1) * -(-self.vocab // p) >= self.vocab

    @property
    def expressible(self) -> bool:
        """Whether a plan that shards heads and the FFN width evenly (no replication) and the vocab over every
        rank can express it (torch's ``loss_parallel()`` fails on a rank with no vocab column), and under sequence
        parallelism an equal sequence shard on every rank (DTensor's ``from_local`` assumes equal shards)."""
        p = self.world_size
        return (self.n_heads % p == 0 and self.n_kv_heads % p == 0 and self.ffn % p == 0 and not self.empty_vocab_shard
                and (not self.sequence_parallel or self.seq % p == 0))

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    def describe(self) -> str:
        return (f"tiny model ({self.n_layers} block(s), vocab {self.vocab}, "
                f"{'tied' if self.tied else 'untied'} embeddings, loss parallel {'on' if self.loss_parallel else 'off'}) "
                f"handed in as {HOW.get(self.handed_in, self.handed_in)}, "
                f"world_size={self.world_size}, batch={self.batch}, seq={self.seq}, hidden={self.hidden}, "
                f"n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}, ffn={self.ffn}, "
                f"bias={self.bias}, dtype={self.dtype}, seed={self.seed}, sequence_parallel={self.sequence_parallel}"
                + ("" if self.expressible else " (heads, FFN or a sequence-parallel sequence do not divide by the "
                                               "world size, or a rank holds no vocab row)"))
