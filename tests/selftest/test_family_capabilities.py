"""Capabilities declared per family (``Capabilities.families``) and padded shards (``padded_shards``):
a library whose linear layers raise on non-divisible dims while its embedding pads any vocabulary
(ColossalAI's shape, ``impls/padded.py``) is judged by each family's own declaration."""

import types

import pytest
from tpconform.engine.suite import Suite
from tpconform.families.embedding import verdict as embedding
from tpconform.families.embedding.case import EmbeddingCase
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.family import FAMILY as LINEAR
from tpconform.impls.entries import ImplError
from tpconform.impls.protocol import Capabilities
from tpconform.impls.simple_module import SimpleModuleImpl

PADDED = "reference-even-padded"
UNDECLARED = "tests.selftest.fixtures.padded_undeclared:Impl"
GRAD = "embedding_weight_grad_matches_the_dense_lookup"
# vocab 13 on 3 ranks: padded to 24, 8 rows a rank; rank 1 holds 5 real rows and 3 padding rows, rank 2
# only padding
UNEVEN_VOCAB = EmbeddingCase(world_size=3, vocab=13, dim=4, batch_shape=(2, 5), dtype="float64", seed=3)


def test_a_family_is_judged_by_its_own_declaration_over_the_rest():
    caps = Capabilities(uneven_shards=False, families={"embedding": {"uneven_shards": True, "padded_shards": True}})
    assert caps.of("linear") is caps and not caps.of("mlp").padded_shards
    assert caps.of("embedding").uneven_shards and caps.of("embedding").padded_shards
    assert caps.of("embedding").dtypes == caps.dtypes and caps.of("embedding").families == {}
    assert Capabilities.from_dict(caps.as_dict()) == caps
    with pytest.raises(ValueError, match="unknown \\['split_dim'\\]"):
        Capabilities(families={"embedding": {"split_dim": 1}})


def test_the_declaration_crosses_from_the_workers(tp_pool):
    caps = Suite(PADDED, tp_pool).capabilities
    assert not caps.uneven_shards and not caps.of("linear").uneven_shards
    assert caps.of("embedding").uneven_shards and caps.of("embedding").padded_shards


def test_padded_shards_declared_conform(tp_pool):
    suite = Suite(PADDED, tp_pool)
    ev = embedding.evidence(suite, UNEVEN_VOCAB)
    assert [int(r["weight_shard"].shape[0]) for r in ev.ranks] == [8, 8, 8]
    assert ev.padded() and [ev.padding(r) for r in range(3)] == [0, 3, 8]
    assert [(ev.rows(r).start, ev.rows(r).stop) for r in range(3)] == [(0, 8), (8, 13), (13, 13)]
    for prop in embedding.EMBEDDING_SPEC:
        assert embedding.violations(suite, UNEVEN_VOCAB, prop, ev) == [], prop


def test_the_linear_layers_keep_their_own_declaration(tp_pool):
    """The same impl's column layer raises on 5 output features at 2 ranks: declared, so it conforms."""
    suite = Suite(PADDED, tp_pool)
    case = LayerCase(kind="column", world_size=2, in_features=3, out_features=5, batch_shape=(2,), dtype="float64",
                     bias=True, gather_output=True)
    ev = LINEAR.run(suite, case)
    assert ev.outcome.construct_failed and not ev.uneven_shards_supported
    assert all(LINEAR.judge(ev, prop) == [] for prop in LINEAR.properties)


def test_undeclared_padding_is_reported_with_what_to_declare(tp_pool):
    found = embedding.violations(Suite(UNDECLARED, tp_pool), UNEVEN_VOCAB, GRAD)
    assert found and "must declare it" in found[0].message and "padded_shards" in found[0].message, found


def test_padding_rows_that_take_gradient_fail(tp_pool):
    found = embedding.violations(Suite("bug-padding-rows-take-grad", tp_pool), UNEVEN_VOCAB, GRAD)
    assert [(v.rank, v.quantity) for v in found] == [(1, "padding grad"), (2, "padding grad")], found
    assert "rank 1's 3 padding row(s)" in found[0].message and "rank 2's 8 padding row(s)" in found[1].message


def test_a_simple_module_declares_per_family_too():
    module = types.SimpleNamespace(ColumnParallelLinear=object, RowParallelLinear=object,
                                   TP_CAPABILITIES={"families": {"embedding": {"padded_shards": True,
                                                                               "accepts_group": True}}})
    caps = SimpleModuleImpl(module).capabilities
    assert caps.of("embedding").padded_shards and not caps.of("embedding").accepts_group
    module.TP_CAPABILITIES = {"families": {"embedding": {"pads": True}}}
    with pytest.raises(ImplError, match="TP_CAPABILITIES is malformed: .*unknown \\['pads'\\]"):
        SimpleModuleImpl(module)


def test_a_padded_grad_reported_without_its_padding_rows_is_a_violation(tp_pool):
    found = embedding.violations(Suite("tests.selftest.fixtures.padded_undeclared:TrimmedGrad", tp_pool),
                                 UNEVEN_VOCAB, GRAD)
    assert [v.rank for v in found] == [1, 2] and all("padding included" in v.message for v in found), found


@pytest.mark.parametrize("declared, says", [
    ({"embedding": {"dtypes": None}}, "capability dtypes"),
    ({"embedding": {"dtypes": ["float8"]}}, "capability dtypes"),
    ({"embedding": {"padded_shards": "yes"}}, "padded_shards: expected True or False"),
    ({"embedding": ["padded_shards"]}, "expected a dict"),
])
def test_a_malformed_family_declaration_is_refused_whole(declared, says):
    """Refused when the description is read, never later inside a family's run (where an error could
    end a search without a verdict)."""
    with pytest.raises(ValueError, match=says):
        Capabilities.from_dict({**Capabilities().as_dict(), "families": declared})


def test_a_declaration_for_a_family_that_does_not_exist_makes_the_impl_unusable(tp_pool):
    from tpconform.engine.runner import ImplUnusable

    with pytest.raises(ImplUnusable, match="unknown families \\['embeddings'\\]"):
        Suite("tests.selftest.fixtures.padded_undeclared:UnknownFamily", tp_pool).description


def test_mixed_precision_runs_only_in_dtypes_the_impl_declares(tp_pool):
    """float32 parameters with a 16-bit compute dtype: the case's when 16-bit, else bfloat16, else float16,
    each only where declared; an impl that declares no float32 is not run in mixed precision (holds)."""
    from tpconform.families.linear.tensors import mixed_precision_for

    every = ("float64", "float32", "bfloat16", "float16")
    assert mixed_precision_for("float16", every) == ("float32", "float16")
    assert mixed_precision_for("float64", every) == ("float32", "bfloat16")
    assert mixed_precision_for("float32", ("float32", "float16")) == ("float32", "float16")
    assert mixed_precision_for("float32", ("float32", "float64")) is None
    assert mixed_precision_for("bfloat16", ("bfloat16", "float64")) is None
    suite = Suite("tests.selftest.fixtures.precision:NoFloat32", tp_pool)
    case = LayerCase("column", 2, 4, 6, (3,), "bfloat16", True, seed=5)
    ev, found = suite.checked(case, "a_mixed_precision_step_matches_the_dense_layer")
    assert found == [] and ev.outcome.mixed_precision is None
    assert all(res.mixed_precision_error is None and res.mixed_output is None for res in ev.ranks)
