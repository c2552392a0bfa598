"""The shares of a split dim the verdict and the workers read (``tpconform.spec.partition``) are torch's own:
``torch.tensor_split``'s where the shards do not say, ``torch.chunk``'s (DTensor's ``Shard``) where a family
or peer asks which rank ``torch.chunk`` leaves empty."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from tpconform.spec.partition import chunk_leaves_a_rank_empty, chunk_sizes, partition

totals, world_sizes = st.integers(0, 40), st.integers(1, 8)


@given(totals, world_sizes)
def test_chunk_sizes_are_torch_chunks(total, world_size):
    sizes = [len(c) for c in torch.arange(total).chunk(world_size)]
    assert chunk_sizes(total, world_size) == sizes + [0] * (world_size - len(sizes))
    assert chunk_leaves_a_rank_empty(total, world_size) == (len(sizes) < world_size or 0 in sizes)


@given(totals, world_sizes)
def test_partition_without_usable_widths_is_tensor_split(total, world_size):
    expected = [len(c) for c in torch.arange(total).tensor_split(world_size)]
    assert partition([None] * world_size, total, world_size) == expected
    assert partition(expected, total, world_size) == expected
