"""Grads a library leaves to its training loop to finalise (``impl.finalize_grads``): declared, they are
judged after the finalisation, which the report names; undeclared, a partial grad is a violation."""

import pytest
from tpconform.engine.suite import Suite
from tpconform.families.sequence_parallel import verdict as sequence_parallel
from tpconform.families.sequence_parallel.case import SequenceParallelCase
from tpconform.impls.peers import missing

FINALIZED = "tests.selftest.fixtures.sp_row_bias_grad_finalized:Impl"
PROP = "sequence_parallel_grads_match_the_dense_layer"
CASE = SequenceParallelCase(kind="row", world_size=2, in_features=4, out_features=3, batch_shape=(4, 2), dtype="float64",
                 bias=True, input_is_parallel=True)


def test_declared_finalisation_is_applied_and_named(tp_pool):
    suite = Suite(FINALIZED, tp_pool)
    ev = sequence_parallel.evidence(suite, CASE)
    assert [r.get("grads_finalized_by") for r in ev.ranks] == [
        "the training loop's all-reduce of the bias grad over the TP group"] * 2
    assert sequence_parallel.violations(suite, CASE, PROP, ev) == []


def test_the_same_layer_declaring_nothing_fails_on_its_bias_grad(tp_pool):
    violations = sequence_parallel.violations(Suite("bug-sp-row-bias-grad-partial", tp_pool), CASE, PROP)
    assert violations and all("bias grad" in v.message for v in violations), violations


def test_megatron_without_its_finalisation_fails(tp_pool):
    """megatron-core's sequence-parallel row bias grad is partial until finalize_model_grads: the adapter
    declares that step; the same adapter declaring nothing is reported on the bias grad."""
    why = missing("megatron")
    if why:
        pytest.skip(why)
    assert sequence_parallel.violations(Suite("megatron", tp_pool), CASE, PROP) == []
    bare = sequence_parallel.violations(Suite("tests.selftest.fixtures.megatron_unfinalized:Impl", tp_pool), CASE, PROP)
    assert bare and all("bias grad" in v.message for v in bare), bare
