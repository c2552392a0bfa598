"""The replicated-norm family's case: plain data that crosses to the workers and replays as a token."""

from __future__ import annotations

from dataclasses import dataclass

from tpconform.spec.plain_case import PlainCase

# The impl's optional method this family needs, declared here (the protocol has no line for it):
#     impl.replicated_norm(weight, *, eps, group) -> module
# given the whole weight ``[hidden]``, on every rank of ``group``; the module (its ``weight`` the replicated
# parameter, read by ``impl.shards``) maps this rank's rows of the sequence, ``[rows, *batch, hidden]``, to
# their RMSNorm, and after backward its weight grad is the whole dense grad, the same on every rank. An impl
# without the method (or returning ``None``) does not offer the family: its tests are skipped.
OFFERED_BY = "replicated_norm"


@dataclass(frozen=True)
class ReplicatedNormCase(PlainCase):
    """An RMSNorm over ``hidden`` features with a weight replicated on every rank, applied to an input
    ``[seq, *batch_shape, hidden]`` sharded along the sequence (dim 0): rank ``r`` holds the rows
    :meth:`tokens` ``(r)`` (``torch.tensor_split``'s: any length, fewer rows than ranks included — the norm
    is per token, so a layer has no reason to require a multiple of the world size)."""

    world_size: int
    seq: int
    batch_shape: tuple[int, ...]  # the dims between the sequence and the hidden dim (Megatron's [s, b, h])
    hidden: int
    dtype: str
    eps: float = 1e-5
    seed: int = 0

    def tokens(self, r: int) -> slice:
        """Rank ``r``'s rows of the sequence."""
        n, extra = divmod(self.seq, self.world_size)
        start = r * n + min(r, extra)
        return slice(start, start + n + (r < extra))

    def describe(self) -> str:
        return (f"RMSNorm with a replicated weight on a sequence-parallel input, world_size={self.world_size}, "
                f"seq={self.seq}, batch_shape={list(self.batch_shape)}, hidden={self.hidden}, dtype={self.dtype}, "
                f"eps={self.eps}, seed={self.seed}")
