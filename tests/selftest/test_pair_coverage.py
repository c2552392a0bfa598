"""Pairwise case coverage (``strategies/pairwise.py``, ``families/linear/case_classes.py``,
``engine/coverage.py``): the covering cases meet every case class and every pair of classes of any
run's options while staying small, the tile-tail classes need a partial tile, the summary names what
a run missed, and the covering cases alone catch the seeded bugs that only a pair of classes or a tile
tail exposes (which the random draws of a default run never or rarely meet)."""

from itertools import combinations

import pytest
from tpconform.engine.coverage import Coverage
from tpconform.engine.suite import Suite
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.case_classes import (
    allowed,
    applicable_classes,
    applicable_pairs,
    classes_of,
    covering_cases,
    dimensions,
    pairs_met,
    pairwise_cases,
)
from tpconform.families.linear.family import FAMILY as LINEAR
from tpconform.impls.zoo import ZOO
from tpconform.strategies import DTYPES, VARIANTS
from tpconform.strategies.pairwise import all_pairs, allowed_pairs
from tpconform.transport.harness import GroupPool

RUNS = [((1,), ("float32",)), ((2,), DTYPES), ((3,), ("bfloat16", "float16")), (tuple(range(1, 9)), DTYPES),
        ((2, 4), ("float64", "float16")), ((1, 2), ("float16",))]  # float16 alone: no scale of 2^6 to pair


def test_all_pairs_meets_every_allowed_pair_in_allowed_rows_only():
    dims = {"a": ("a0", "a1", "a2"), "b": ("b0", "b1"), "c": ("c0", "c1", "c2", "c3"), "d": ("d0", "d1")}

    def ok(row):
        return not ({row.get("a"), row.get("c")} == {"a2", "c3"} or {row.get("b"), row.get("d")} == {"b1", "d1"})

    rows = all_pairs(dims, ok)
    assert all(set(r) == set(dims) and ok(r) for r in rows)
    met = {pair for r in rows for pair in combinations([r[d] for d in dims], 2)}
    assert met == allowed_pairs(dims, ok)
    assert ("a2", "c3") not in met and len(rows) <= 14  # 3 x 4 = 12 is the least any covering array needs


def test_a_value_no_row_can_hold_is_dropped_from_the_rows_and_the_pairs():
    """``--dtypes=float16`` alone once raised in the covering cases ("no value of 'dtype' fits"):
    float16 forbids a scale of 2^6, so that scale can sit in no row and meet no pair."""
    dims = {"dtype": ("float16",), "scale": ("1", "2^6"), "bias": ("bias", "no bias")}

    def ok(row):
        return {row.get("dtype"), row.get("scale")} != {"float16", "2^6"}

    rows = all_pairs(dims, ok)
    assert {r["scale"] for r in rows} == {"1"} and {r["bias"] for r in rows} == {"bias", "no bias"}
    assert not any("2^6" in pair for pair in allowed_pairs(dims, ok))


@pytest.mark.parametrize("world_sizes,dtypes", RUNS)
@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_covering_cases_meet_every_class_and_every_pair(variant, world_sizes, dtypes):
    cases = covering_cases(variant, world_sizes, dtypes)
    assert all(c.world_size in world_sizes and c.dtype in dtypes for c in cases)
    classes = set().union(*map(classes_of, cases))
    pairs = set().union(*map(pairs_met, cases))
    assert applicable_classes(world_sizes, dtypes, [str(variant)]) - classes == set()
    assert applicable_pairs(world_sizes, dtypes, [str(variant)]) - pairs == set()


def test_pairwise_cases_are_few_small_and_parallel():
    """Near the least a covering array can be (layouts x dtypes = 28 at the defaults), and each case
    small: a split dim of at most 2·ws+1, 6 batch elements, never world size 1 when a larger one is allowed."""
    sizes = tuple(range(1, 9))
    for variant in VARIANTS:
        cases = pairwise_cases(variant, sizes, DTYPES)
        assert len(cases) <= 34, len(cases)
        for c in cases:
            assert c.world_size in (2, 3) and max(c.in_features, c.out_features) <= 2 * c.world_size + 1, c
            assert len(c.batch_shape) <= 2 and all(side <= 3 for side in c.batch_shape), c


def test_the_deepspeed_pair_is_met_at_world_size_two_or_more():
    """column x 2-D input x transposed layout in one case, parallel: the input grad reaching the
    backward all-reduce is then non-contiguous (DeepSpeed 0.19.8's discarded ``.contiguous()`` copy)."""
    for variant in VARIANTS:
        assert any(c.layout == "transposed" and len(c.batch_shape) == 1 and c.batch_shape[0] > 1
                   and c.world_size >= 2 for c in covering_cases(variant, range(1, 9), DTYPES)), variant


def test_forbidden_pairs_are_never_generated():
    dims = dimensions(range(1, 9), DTYPES)
    for a, b in [("layout transposed", "1-D input"), ("layout batch_permuted", "2-D input"),
                 ("empty batch", "1-D input"), ("dtype float16", "scale 2^6")]:
        assert not allowed({"x": a, "y": b})
        assert (a, b) not in allowed_pairs(dims, allowed) and (b, a) not in allowed_pairs(dims, allowed)


def _rows(n: int) -> LayerCase:
    return LayerCase(kind="row", world_size=2, in_features=4, out_features=3, batch_shape=(n,), dtype="float32",
                     bias=True)


@pytest.mark.parametrize("rows,past", [(64, set()), (128, set()), (40, {32}), (100, {32, 64}),
                                       (150, {32, 64, 128}), (160, {64, 128})])
def test_a_tile_tail_class_needs_a_partial_tile(rows, past):
    assert {c for c in classes_of(_rows(rows)) if c.startswith("batch rows past")} == {
        f"batch rows past {t}" for t in past}


def test_tile_tails_are_counted_per_shard():
    column = LayerCase(kind="column", world_size=2, in_features=40, out_features=200, batch_shape=(3,),
                       dtype="float32", bias=True)
    assert {c for c in classes_of(column) if "per-shard" in c} == {
        "per-shard in features past 32", "per-shard out features past 32", "per-shard out features past 64"}


def test_the_summary_counts_and_names_the_pairs_a_run_missed():
    coverage, variant = Coverage(), VARIANTS[0]
    cases = covering_cases(variant, (2, 3), ("float32",))
    coverage.count(LINEAR, cases[0], ["p"])
    (line,) = coverage.lines((2, 3), ("float32",))
    total = len(applicable_pairs((2, 3), ("float32",), [str(variant)]))
    assert f"{len(pairs_met(cases[0]))}/{total} pairs met" in line
    assert "pairs not met: " in line and " x " in line and "more" in line
    for case in cases:
        coverage.count(LINEAR, case, ["p"])
    (line,) = coverage.lines((2, 3), ("float32",))
    assert f"{total}/{total} pairs met" in line and "not met" not in line, line


# the seeded bugs a pair of classes or a tile tail exposes, and what the catching case must hold
ONLY_BY_COVERING = {
    "bug-contiguous-copy-reduced-and-discarded": lambda c: c.layout == "transposed" and len(c.batch_shape) == 1,
    "bug-rows-past-64-dropped": lambda c: "batch rows past 64" in classes_of(c),
    "bug-gather-drops-partial-chunk": lambda c: "batch rows past 128" in classes_of(c),
    "bug-features-past-32-ignored": lambda c: "per-shard in features past 32" in classes_of(c),
}


@pytest.fixture(scope="module")
def pool():
    pool = GroupPool(timeout_s=30.0)
    yield pool
    pool.close()


@pytest.mark.parametrize("name", sorted(ONLY_BY_COVERING))
def test_the_covering_cases_alone_catch_a_bug_of_a_pair_or_a_tile_tail(name, pool):
    bug = next(b for b in ZOO if b.name == name)
    variant = next(v for v in VARIANTS if str(v) == bug.variant)
    suite = Suite(name, pool, world_sizes=range(1, 9))
    caught = [c for c in covering_cases(variant, suite.world_sizes, suite._dtypes())
              if suite.checked(c, bug.caught_by)[1]]
    assert caught, f"no covering case catches {name}"
    assert all(ONLY_BY_COVERING[name](c) for c in caught), [c.describe() for c in caught]
