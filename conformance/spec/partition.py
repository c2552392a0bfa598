"""How a split dim is shared among the ranks, as every family with shards reads it from their shapes."""

from __future__ import annotations


def partition(widths: list, total: int, world_size: int) -> list[int]:
    """Each rank's share of a split dim of ``total``, as the ranks' shard widths imply; when they do not
    form a partition (the shards property says why), ``torch.tensor_split``'s. The verdict slices what
    it sends by it and the worker reads its slice by it, so both always agree."""
    if len(widths) == world_size and all(isinstance(w, int) and w >= 0 for w in widths) and sum(widths) == total:
        return list(widths)
    base, extra = divmod(total, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def chunk_sizes(total: int, world_size: int) -> list[int]:
    """Each rank's share of ``total`` rows as ``torch.chunk`` (DTensor's ``Shard``) splits them:
    ``ceil(total / world_size)`` a rank, the last ranks what is left, which can be nothing (9 rows on 4
    ranks: 3, 3, 3, 0)."""
    per_rank = -(-total // world_size) if total else 0
    return [max(0, min(per_rank, total - r * per_rank)) for r in range(world_size)]


def chunk_leaves_a_rank_empty(total: int, world_size: int) -> bool:
    """Whether :func:`chunk_sizes` leaves some rank no row (every rank can tell, from the global size)."""
    return 0 in chunk_sizes(total, world_size)
