"""Every family beyond the single layer, one test per property of its spec and per variant:

- ``subgroups``: a world split into independent TP groups, each layer given its own group; every
  group on its own is a conforming layer (``conformance/families/subgroups``);
- ``mlp``: column(gather_output=False) → activation → row(input_is_parallel=True) is the dense MLP,
  with exactly one all-reduce in the forward (``conformance/families/mlp``);
- ``primitives``: copy-to, reduce-from, scatter-to and gather-from each do their dense forward and
  backward and leave their inputs alone (an impl offers them via ``primitives()``);
- ``sequence_parallel``, ``embedding``, ``merged``: sequence-parallel layers, the vocab-parallel
  embedding and merged (QKV, gate-up) column layers, each offered by an optional impl method.

The tests are made from each family's properties (``conformance/families/<name>/family.py``), so a
new family's folder is checked without a line here.
"""

from tpconform.pytest_plugin.testing import family_tests

globals().update(family_tests("families"))
