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
