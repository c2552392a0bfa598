"""The block family's case: one Llama-style transformer block's config, plain data that crosses to the
workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.spec.plain_case import PlainCase

# The impl's optional method this family needs, declared here (the protocol has no line for it):
#     impl.parallelize_block(block, group) -> module
# given the suite's dense transformer block (an ``nn.Module`` in the case's dtype, torchtitan's names:
# ``attention.wq/wk/wv/wo``, ``attention.n_heads``/``n_kv_heads``, ``feed_forward.w1/w2/w3``,
# ``attention_norm``, ``ffn_norm``) on every rank of ``group``; returns the parallelised module, called on
# the whole input. A config the plan cannot express must raise here. Parameters are DTensors, or plain
# tensors that are whole or carry ``tp_dense_slice`` (``((start, stop), ...)`` per dim). An impl without
# the method (or returning ``None``) does not offer the family: its tests are skipped.
OFFERED_BY = "parallelize_block"


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

    @property
    def expressible(self) -> bool:
        """Whether a plan that shards heads and the FFN width evenly (no replication) can express it:
        every rank must hold whole query heads, whole kv heads and an equal FFN slice."""
        p = self.world_size
        return self.n_heads % p == 0 and self.n_kv_heads % p == 0 and self.ffn % p == 0

    def describe(self) -> str:
        return (f"transformer block (RMSNorm, RoPE attention, SwiGLU), world_size={self.world_size}, "
                f"batch={self.batch}, seq={self.seq}, hidden={self.hidden}, n_heads={self.n_heads}, "
                f"n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}, ffn={self.ffn}, bias={self.bias}, "
                f"dtype={self.dtype}, scale={self.scale}, seed={self.seed}"
                + ("" if self.expressible else " (heads or FFN do not divide by the world size)"))
