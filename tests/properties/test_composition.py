"""Beyond one layer — the MLP real models build from the two layers:
column(gather_output=False) → activation → row(input_is_parallel=True) is the dense two-layer MLP,
forward and every grad, with exactly one all-reduce in the forward."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.families.mlp import verdict as compositions
from conformance.pytest_plugin import profiles


def _mlp_declared(suite) -> None:
    caps = suite.capabilities
    if False not in caps.column_gather_output or True not in caps.row_input_is_parallel:
        pytest.skip(f"{suite.impl_spec} does not declare column gather_output=False and row input_is_parallel=True")


def for_every_mlp(test):
    return settings(profiles.active())(given(data=st.data())(test))


@for_every_mlp
def test_mlp_matches_the_dense_mlp(tp_suite, data):
    """Every rank's output, input grad, and weight/bias-shard grads of both layers are the dense MLP's."""
    _mlp_declared(tp_suite)
    case = data.draw(compositions.cases(tp_suite), label="case")
    compositions.check(tp_suite, case, ["mlp_output_matches_the_dense_mlp", "mlp_input_grad_matches_the_dense_mlp",
                                        "mlp_parameter_grads_match_the_dense_mlp"])


@for_every_mlp
def test_mlp_forward_uses_one_all_reduce(tp_suite, data):
    """The forward runs exactly one collective: the row layer's all-reduce."""
    _mlp_declared(tp_suite)
    case = data.draw(compositions.cases(tp_suite), label="case")
    compositions.check(tp_suite, case, ["mlp_forward_uses_one_all_reduce"])
