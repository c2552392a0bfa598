"""The tolerance model (docs/TOLERANCE.md) is sound for correct layers and tight enough to catch a
float32 layer that computes in bfloat16, on every example that has an output to compare, by a
wide margin (the suite's reduction lengths, up to 32; see docs/TOLERANCE.md for longer ones)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from tpconform.engine.suite import Suite
from tpconform.spec import tolerance as tol
from tpconform.strategies import VARIANTS, layer_cases, world_sizes

SETTINGS = settings(max_examples=15, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
LOW = "tests.selftest.fixtures.precision:ComputesInBfloat16"
PROP = "output_matches_the_dense_layer"


def _float32_cases(variant):
    return layer_cases(variant=variant, world_sizes=world_sizes(allowed=(1, 2, 3)), dtypes=("float32",),
                       max_batch_dims=2).filter(lambda c: c.batch_shape and min(c.batch_shape) > 0)


def test_a_float32_layer_computing_in_bfloat16_fails_on_every_example(tp_pool):
    low, ref = Suite(LOW, tp_pool), Suite("reference", tp_pool)

    @SETTINGS
    @given(case=_float32_cases(VARIANTS[2]) | _float32_cases(VARIANTS[0]))
    def caught(case):
        found = low.violations(case, PROP)
        assert found and "outside tolerance" in found[0].message, (case, found)
        m = found[0].mismatch
        assert abs(m.actual - m.expected) > 5 * m.tolerance, ("caught by a thin margin", case, m)
        assert ref.violations(case, PROP) == [], case

    caught()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_the_cast_error_bounds_a_float32_factor_rounded_to_16_bits(dtype):
    """``tolerance.cast_error``: a float32 matrix off the 16-bit grid (magnitudes down to the subnormal
    range), rounded to ``dtype`` as autocast does, changes ``x @ wᵀ`` by no more than the bound."""
    gen = torch.Generator().manual_seed(0)
    for scale in (1.0, 2.0**-20):
        w = (torch.randn(64, 48, generator=gen, dtype=torch.float64) * scale).float()
        x = torch.randn(16, 48, generator=gen, dtype=torch.float64).to(dtype).double()
        exact, cast = x @ w.double().T, x @ w.to(dtype).double().T
        bound = tol.cast_error(x.abs() @ w.double().abs().T, x.abs().sum(-1, keepdim=True), dtype)
        assert bool(((cast - exact).abs() <= bound).all())
        assert float(((cast - exact).abs() / bound).max()) > 0.05  # the rounding is there, and the bound not vacuous


MIXED = "a_mixed_precision_step_matches_the_dense_layer"


def test_a_row_layer_all_reducing_in_16_or_32_bits_passes_mixed_precision(tp_pool):
    """Under autocast the reference's row layer all-reduces its 16-bit partial outputs; a layer that
    reduces them in float32 is as correct: the compute dtype's bound holds for both."""
    suites = [Suite("reference", tp_pool), Suite("tests.selftest.fixtures.precision:ReducesInFloat32", tp_pool)]
    cases = layer_cases(variant=VARIANTS[2], world_sizes=world_sizes(allowed=(2, 3)),
                        dtypes=("float32", "bfloat16", "float16"), max_batch_dims=2)

    @settings(SETTINGS, max_examples=6)
    @given(case=cases)
    def holds(case):
        for suite in suites:
            assert suite.violations(case, MIXED) == [], (suite.impl_spec, case)

    holds()


def test_a_bound_past_the_dtypes_range_admits_an_overflow():
    """A bound larger than the dtype's largest value (the model's float16 grads through a norm one element wide:
    3e44) admits any value the dtype holds, and so an overflow to inf and its NaN (the reference's own result
    there, found by benchmarks/false_failures.py); a bound within the range still rejects them."""
    import torch
    from tpconform.spec.compare import compare

    expected = torch.tensor([0.05, 1.0], dtype=torch.float64)
    got = torch.tensor([float("nan"), float("inf")], dtype=torch.float16)
    assert compare(got, expected, torch.tensor([3e44, 1e6], dtype=torch.float64), "grad") is None
    m = compare(got, expected, torch.tensor([3e44, 1.0], dtype=torch.float64), "grad")
    assert m is not None and m.bad == 1 and m.index == (1,)
    assert compare(got.double(), expected, torch.tensor([3e44, 1e6], dtype=torch.float64), "grad") is not None
