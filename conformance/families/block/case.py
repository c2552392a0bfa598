"""The block family's case: one Llama-style transformer block's config, plain data that crosses to the
workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tpconform.spec.plain_case import PlainCase

# The impl's optional methods this family needs, declared here (the protocol has no line for them); an impl
# offers either or both, each checked under its own variant (``HANDED_IN``), by the same properties:
#     impl.parallelize_block(block, group) -> module                        (variant "plan")
#     impl.build_tp_block(block, group) -> (module, name_map)               (variant "builder")
#
# (a) parallelize_block, a plan:
# given the suite's dense transformer block (an ``nn.Module`` in the case's dtype, torchtitan's names:
# ``attention.wq/wk/wv/wo``, ``attention.n_heads``/``n_kv_heads``, ``feed_forward.w1/w2/w3``,
# ``attention_norm``, ``ffn_norm``) on every rank of ``group``; returns the parallelised module, called on
# the whole input. A config the plan cannot express must raise here. Parameters are DTensors, or plain
# tensors that are whole or carry ``tp_dense_slice`` (``((start, stop), ...)`` per dim). An impl without
# the method (or returning ``None``) does not offer the family: its tests are skipped.
# The block also carries what a plan may need to know of the run (plain attributes, set before the call):
# ``block.sequence_parallel`` (bool): each rank is fed only its sequence shard of the input and of the
# upstream grad (``torch.chunk``'s share along dim 1, DTensor's ``Shard(1)``) and must return its shard of
# the output (torchtitan's SequenceParallel layout); ``block.seq_len``: the whole sequence's length (as
# torchtitan's ``max_seq_len``), so that a plan can refuse one the world size does not divide.
# After the first forward/backward the suite may take one optimizer step (``torch.optim``'s SGD or AdamW,
# ``STEP``) on ``module.parameters()`` and run a second forward/backward: the module must use what the
# step left in its parameters.
#
# (b) build_tp_block, a builder: from the same dense block (read its weights, ``block.attention.n_heads`` ...,
# ``block.sequence_parallel``, ``block.seq_len``; ``dense.EPS``, ``dense.THETA``; leave it unchanged) build the
# impl's OWN tensor-parallel block on every rank of ``group`` (Megatron-style: its column and row layers, heads
# split by hand) and return it with a name map, ``{dense parameter name: (its parameter name, sharding)}``,
# one entry per dense parameter, where sharding is
#     None                 replicated: it holds the whole dense parameter (norm weights, row biases);
#     dim (an int)         sharded along ``dim`` as ``torch.chunk`` (DTensor ``Shard(dim)``) splits it: rank r
#                          holds chunk r (a column weight and bias: 0; a row weight: 1);
#     (dim, start, stop)   this rank holds the dense parameter's ``start:stop`` along ``dim`` (any other layout:
#                          uneven shards, kv heads replicated over the ranks that share them);
#     (dim, start, stop, [(a, b), ...])
#                          a fused parameter: the ranges ``a:b`` of their local tensor along ``dim``, concatenated
#                          in order, hold the dense ``start:stop`` (Megatron's ``linear_qkv``: per query group
#                          ``[q heads; k; v]``, so ``wq``'s part is one range per local group; ``linear_fc1``:
#                          ``[w1 part; w3 part]``). Empty (``start == stop``, no ranges): none of it on this rank.
# Its parameter is a plain tensor or a DTensor (read as ``to_local()``); every property judges it as it judges
# a plan's: its grad against that slice of the dense grad, its value after the step against the stepped one.
# The module is called, stepped and judged exactly as a plan's (above); a config it cannot express must raise
# in build_tp_block, on every rank. What a name map cannot say yet: a parameter of theirs with no dense
# counterpart, or a dense parameter whose part on a rank is not one ``start:stop`` range.
OFFERED_BY = "parallelize_block / build_tp_block"
HANDED_IN = ("plan", "builder")  # the variants: which of the two the example checks

# the optimizer steps the suite takes (torch.optim, their default hyper-parameters but these)
STEP = {"sgd": {"lr": 2**-6}, "adamw": {"lr": 0.01, "weight_decay": 0.1}}


def sequence_shards(seq: int, world_size: int) -> list[int]:
    """Each rank's share of the sequence under sequence parallelism: ``torch.chunk``'s (DTensor ``Shard``)."""
    sizes = [len(c) for c in torch.arange(seq).chunk(world_size)]
    return sizes + [0] * (world_size - len(sizes))


@dataclass(frozen=True)
class BlockCase(PlainCase):
    world_size: int
    batch: int
    seq: int
    hidden: int  # the model width: the block's input and output
    n_heads: int
    n_kv_heads: int  # divides n_heads (grouped-query attention)
    head_dim: int  # even (RoPE rotates pairs)
    ffn: int  # the SwiGLU inner width
    bias: bool  # a bias on every projection (Qwen-style), or none (Llama)
    dtype: str
    scale: float = 1.0  # the input's spread
    seed: int = 0
    sequence_parallel: bool = False  # each rank holds its sequence shard of the activations (torchtitan's SP)
    optimizer: str = "sgd"  # the step between the two passes (``STEP``)
    handed_in: str = "plan"  # "plan" (parallelize_block) or "builder" (build_tp_block): ``HANDED_IN``

    @property
    def expressible(self) -> bool:
        """Whether a plan that shards heads and the FFN width evenly (no replication) can express it:
        every rank must hold whole query heads, whole kv heads and an equal FFN slice (and, under sequence
        parallelism, an equal sequence shard)."""
        p = self.world_size
        return (self.n_heads % p == 0 and self.n_kv_heads % p == 0 and self.ffn % p == 0
                and (not self.sequence_parallel or self.seq % p == 0))

    def describe(self) -> str:
        return (f"transformer block (RMSNorm, RoPE attention, SwiGLU), world_size={self.world_size}, "
                f"batch={self.batch}, seq={self.seq}, hidden={self.hidden}, n_heads={self.n_heads}, "
                f"n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}, ffn={self.ffn}, bias={self.bias}, "
                f"dtype={self.dtype}, scale={self.scale}, seed={self.seed}, "
                f"sequence_parallel={self.sequence_parallel}, optimizer={self.optimizer}, "
                f"handed in as {'parallelize_block' if self.handed_in == 'plan' else 'build_tp_block'}"
                + ("" if self.expressible else " (heads, FFN or sequence do not divide by the world size)"))
