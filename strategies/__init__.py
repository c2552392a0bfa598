"""Hypothesis strategies for tensor-parallel layer cases, reusable in your own tests::

    from hypothesis import given
    from tpconform.strategies import layer_cases

    @given(layer_cases("row", world_sizes=world_sizes(2, 4), dtypes=("float32",)))
    def test_my_row_layer(case): ...

Every family's strategies are here too (``from tpconform.strategies import embedding_cases``): each
family folder's ``strategy.py`` names them in its ``__all__`` and they are found by convention
(``tpconform.families.folders``), on first use, so a new family needs no line here.
"""

from tpconform.strategies.layers import DTYPES, batch_shapes, dtypes, features, scales, world_sizes

# with every family's strategies (the linear layer's VARIANTS, Variant, layer_cases, layouts...), found below
__all__ = ["DTYPES", "batch_shapes", "dtypes", "features", "scales", "world_sizes"]


def _family_strategies() -> dict:
    from tpconform.families.folders import each

    return {name: getattr(module, name) for _, module in each("strategy") for name in module.__all__}


def __getattr__(name: str):
    """A family's strategy (found in its folder's ``strategy.py``), on first use: importing them here at
    once would import every family's case before ``tpconform.strategies.layers``, which they build on."""
    found = _family_strategies()
    globals().update(found)  # found once: later uses are plain attributes
    if name in found:
        return found[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_family_strategies()))
