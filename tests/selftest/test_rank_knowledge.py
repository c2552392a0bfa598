"""A rank learns only what its rank may know: no message to a worker carries the case's seed (from which
every tensor of the example could be regenerated), and a sliced tensor (a row layer's sliced input, a
column layer's sharded output's upstream grad, the training step's and the usage stage's own) reaches
each rank as its slice only, in every round. The hostile fixture ``seed_regenerating_row.py`` (no
collective at all; it regenerates the whole input from the seed) would pass if the seed were sent;
``parallelism/sp_whole_input.py`` (sequence-parallel layers that skip their reduce-scatters by reading the
whole input or upstream grad out of the harness's frames) passed every property of its family while the
sequence-parallel workers were sent those whole and sliced them themselves."""

import os
import subprocess
import sys

import pytest
import torch
from tpconform.engine.runner import Runner
from tpconform.families.cross_entropy.case import CrossEntropyCase
from tpconform.families.embedding.case import EmbeddingCase
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.tensors import make_tensors, make_update
from tpconform.families.merged.case import MergedCase
from tpconform.families.mlp.case import MLPCase
from tpconform.families.primitives.case import PrimitiveCase
from tpconform.families.primitives.verdict import make_primitive_tensors
from tpconform.families.registry import families
from tpconform.families.sequence_parallel.case import SequenceParallelCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "selftest", "fixtures", "seed_regenerating_row.py")
SP_FIXTURE = "tests.selftest.fixtures.parallelism.sp_whole_input:Impl"
SEED = 1234567


class Recording(Runner):
    """A runner whose ranks never run: it records every message; a build-only round answers with the
    shard shapes of an even split, so the round that sends the slices follows."""

    def __init__(self):
        super().__init__("reference", pool=None)
        self.sent: list[dict] = []

    def conversion(self, case):
        return ("float64", "to") if case.dtype != "float64" else ("float32", "double")  # no impl to ask

    def mixed_precision(self, case):
        return ("float32", "bfloat16")  # no impl to ask

    def request(self, world_size, messages, while_waiting=None, sent=None):
        self.sent += list(messages.values())
        first = next(iter(messages.values()))
        if first.get("stages") == [] and first["cmd"] == "run_primitive":  # scatter_to's forward: an even split
            x, ws = first["data"]["x"], len(messages)
            return {r: {"output": x.tensor_split(ws, -1)[r].clone()} for r in messages}, None
        if first.get("stages") == [] and first["cmd"] in ("run", "run_tp_group", "run_sequence_parallel"):
            case = LayerCase.from_dict(first["case"])
            ws = case.tp_size or case.world_size
            rows = case.out_features // ws if case.kind == "column" else case.out_features
            cols = case.in_features if case.kind == "column" else case.in_features // ws
            return {r: {"rank": r, "weight_shard": torch.zeros(rows, cols), "bias_shard": None}
                    for r in messages}, None
        return {}, "recorded, not run"


class Capabilities:
    def of(self, family):
        return self

    uneven_shards = padded_shards = False
    backward = True  # the capability main added (a forward-only layer runs the forward stages only)


class Suite:
    impl_spec, examples, capabilities = "reference", 0, Capabilities()

    def __init__(self):
        self.runner = Recording()


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _layer(kind, **kw):
    return LayerCase(kind, 2, 4, 6, (3,), "float32", True, seed=SEED, **kw)


def _whole(case: LayerCase, key: str) -> list:
    """The tensors a rank must never be sent whole: ``key`` of the example and of its training step."""
    return [getattr(make_tensors(case), key), getattr(make_update(case), key)]


SLICED = [  # (family, case, tensors no rank may be sent whole)
    ("linear", _layer("row", input_is_parallel=True), lambda c: _whole(c, "x")),
    ("linear", _layer("column", gather_output=False), lambda c: _whole(c, "grad_out")),
    ("subgroups", LayerCase("row", 4, 4, 6, (3,), "float32", True, input_is_parallel=True, seed=SEED, tp_size=2),
     lambda c: [t for g in range(2) for t in _whole(LayerCase("row", 2, 4, 6, (3,), "float32", True,
                                                              input_is_parallel=True, seed=SEED + g), "x")]),
    ("merged", MergedCase(2, 4, (2, 4), (3,), "float32", True, seed=SEED),
     lambda c: [make_tensors(c.layer_case()).grad_out]),
    # both: the sequence-sharded tensor and the one each rank holds a feature slice of (the whole sequence)
    ("sequence_parallel", SequenceParallelCase("column", 2, 4, 6, (4,), "float32", True, seed=SEED),
     lambda c: [make_tensors(c).x, make_tensors(c).grad_out]),
    ("sequence_parallel", SequenceParallelCase("row", 2, 4, 6, (4,), "float32", True, seed=SEED),
     lambda c: [make_tensors(c).grad_out, make_tensors(c).x]),
    # scatter_to's upstream grad: whole, a rank could return it as its input grad and skip the all-gather
    ("primitives", PrimitiveCase(2, "scatter_to", (3, 4), "float32", seed=SEED),
     lambda c: [make_primitive_tensors(c).gs[0]]),
]
OTHERS = [
    ("cross_entropy", CrossEntropyCase(2, 4, (3,), "float32", seed=SEED)),
    ("embedding", EmbeddingCase(2, 4, 3, (3,), "float32", seed=SEED)),
    ("mlp", MLPCase(2, 4, 6, (3,), "float32", True, seed=SEED)),
    ("primitives", PrimitiveCase(2, "gather_from", (3, 4), "float32", seed=SEED)),
]


def _sent(family: str, case, stages=None) -> list[dict]:
    suite = Suite()
    fam = families()[family]
    try:
        fam.run(suite, case, stages)
    except (IndexError, AttributeError, TypeError):
        pass  # what follows the recorded round needs ranks that ran: only the messages matter here
    assert suite.runner.sent, family
    return suite.runner.sent


@pytest.mark.parametrize("family,case", [(f, c) for f, c, _ in SLICED] + OTHERS,
                         ids=lambda v: v if isinstance(v, str) else "")
def test_no_message_to_a_rank_carries_the_seed(family, case):
    for message in _sent(family, case):
        assert "seed" not in message["case"] and SEED not in message["case"].values(), (family, message["case"])
        assert case.seed == SEED  # the verdict keeps it (replay lines are written there)


@pytest.mark.parametrize("family,case,whole", SLICED, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("stages", [None, ()], ids=["every stage", "shards only"])
def test_no_rank_is_sent_a_sliced_tensor_whole(family, case, whole, stages):
    if family not in ("linear", "subgroups") and stages is not None:
        pytest.skip("the family runs its examples whole")
    forbidden = whole(case)
    for message in _sent(family, case, stages):
        for t in _tensors(message["data"]):
            assert not any(t.shape == w.shape and torch.equal(t, w) for w in forbidden), (family, message.get("stages"))


def test_the_fixture_rebuilds_the_whole_input_when_it_has_the_seed():
    """What makes the fixture hostile: given the example's seed, it regenerates the whole input from one
    rank's slice (so it passes when the seed reaches the ranks); given the case without it, it cannot."""
    sys.path.insert(0, os.path.dirname(FIXTURE))
    try:
        from seed_regenerating_row import regenerate_full_input
    finally:
        sys.path.remove(os.path.dirname(FIXTURE))
    case = _layer("row", input_is_parallel=True)
    x = make_tensors(case).x
    assert torch.equal(regenerate_full_input(case, x[..., 2:], 2, 4), x)
    sent = LayerCase.from_dict(_sent("linear", case)[-1]["case"])
    assert regenerate_full_input(sent, x[..., 2:], 2, 4) is None


@pytest.fixture(scope="module")
def graded():
    """The fixture and the reference, graded in-process on the sliced row variant at 2 ranks."""
    from tpconform.grading.one import Grader
    from tpconform.strategies import VARIANTS

    row_sliced = next(v for v in VARIANTS if str(v) == "row-sliced-input")
    cells = {}
    for impl in (FIXTURE, "reference"):
        records: list = []
        grader = Grader(impl, seed_value=0, examples=1, world_sizes=[2], dtypes=["float32"], timeout_s=60,
                        emit=records.append)
        try:
            grader.grade_variant(row_sliced)
        finally:
            grader.suite.runner.pool.close()
        cells[impl] = {r["cell"]["property"]: r["cell"] for r in records if "cell" in r}
    return cells


def test_the_seed_regenerating_row_layer_loses_its_points_and_the_reference_keeps_them(graded):
    fixture, reference = graded[FIXTURE], graded["reference"]
    assert fixture["output_matches_the_dense_layer"]["verdict"] == "fail", fixture["output_matches_the_dense_layer"]
    judged = [p for p, c in reference.items() if c["verdict"] != "n/a"]
    assert judged and all(reference[p]["verdict"] == "pass" for p in judged), reference


def test_pytest_fails_the_seed_regenerating_row_layer():
    r = subprocess.run([sys.executable, "-m", "pytest", f"--impl={FIXTURE}", "-q", "-p", "no:cacheprovider",
                        "--world-sizes=2", "--tp-timeout=60",
                        "-k", "test_output_matches_the_dense_layer and row-sliced-input and not tp_group"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_the_sp_fixture_finds_a_whole_tensor_only_where_one_was_sent():
    """What makes ``sp_whole_input.py`` hostile: it reads the tensor the harness sent its rank, and uses it
    where it holds every feature (as the sequence-parallel workers once were sent them)."""
    from tests.selftest.fixtures.parallelism.sp_whole_input import whole_sent

    x = torch.randn(4, 6)

    def worker(message):  # the harness's frame: the message it was sent
        return whole_sent("x", 6)

    assert worker({"data": {"x": x}}) is x
    assert worker({"data": {"x": x[..., :3]}}) is None


@pytest.fixture(scope="module")
def graded_sp():
    """The sequence-parallel fixture and the reference, the family graded in-process at 2 ranks."""
    from tpconform.grading.one import Grader

    cells = {}
    for impl in (SP_FIXTURE, "reference"):
        records: list = []
        grader = Grader(impl, seed_value=0, examples=3, world_sizes=[2], dtypes=["float32"], timeout_s=60,
                        emit=records.append)
        try:
            grader.grade_family("sequence_parallel")
        finally:
            grader.suite.runner.pool.close()
        cells[impl] = {(r["cell"]["property"], r["cell"]["variant"]): r["cell"] for r in records if "cell" in r}
    return cells


def test_sp_layers_that_read_the_whole_tensors_lose_their_points_and_the_reference_keeps_them(graded_sp):
    fixture, reference = graded_sp[SP_FIXTURE], graded_sp["reference"]
    assert reference and all(c["verdict"] == "pass" for c in reference.values()), reference
    failed = {key for key, c in fixture.items() if c["verdict"] == "fail"}
    # the row's forward skipped its reduce-scatter; the column's backward skipped its own
    assert ("sequence_parallel_output_matches_the_dense_layer", "sequence_parallel/row") in failed, fixture
    assert ("sequence_parallel_grads_match_the_dense_layer", "sequence_parallel/column") in failed, fixture


def test_pytest_fails_a_scatter_that_returns_the_whole_grad_it_was_sent():
    """``parallelism/scatter_whole_grad.py``'s ``scatter_to`` skips its all-gather backward, returning the
    upstream grad it finds in the harness's frames: it passed while the whole grad was sent."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--impl=tests.selftest.fixtures.parallelism.scatter_whole_grad:Impl",
                        "-q", "-p", "no:cacheprovider", "--world-sizes=2-3", "--tp-timeout=60",
                        "-k", "test_primitive_backward_matches_its_dense_meaning and scatter_to",
                        "tests/properties/test_families.py"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
