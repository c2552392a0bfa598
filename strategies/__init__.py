"""Hypothesis strategies for tensor-parallel layer cases, reusable in your own tests::

    from hypothesis import given
    from tpconform.strategies import layer_cases

    @given(layer_cases("row", world_sizes=world_sizes(2, 4), dtypes=("float32",)))
    def test_my_row_layer(case): ...
"""

from tpconform.strategies.layers import (
    DTYPES,
    VARIANTS,
    Variant,
    batch_shapes,
    dtypes,
    features,
    layer_cases,
    layouts,
    scales,
    world_sizes,
)

__all__ = [
    "DTYPES",
    "VARIANTS",
    "Variant",
    "batch_shapes",
    "dtypes",
    "features",
    "layer_cases",
    "layouts",
    "scales",
    "world_sizes",
]
