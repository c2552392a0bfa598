"""The tolerance model (docs/TOLERANCE.md) is sound for correct layers and tight enough to catch a
float32 layer that computes in bfloat16, on every example that has an output to compare, by a
wide margin (the suite's reduction lengths, up to 32; see docs/TOLERANCE.md for longer ones)."""

from hypothesis import HealthCheck, given, settings
from tpconform.engine.suite import Suite
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
