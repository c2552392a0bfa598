"""Failure reports a person can act on: a first attempt with two bugs reports in about 200 lines; the
same symptom on several ranks is one line; a collective mismatch is named as one, with the backend's
own message; what the candidate raised shows its own file:line; a likely cause only where its
precondition holds."""

import os
import shutil
import subprocess
import sys

import pytest
from tpconform.engine.report import covering_report, format_case_failure
from tpconform.engine.suite import Suite
from tpconform.families.linear.case import LayerCase
from tpconform.families.registry import family_of
from tpconform.spec.violations import fold_ranks, rank_span
from tpconform.transport import stacks
from tpconform.transport.harness import GroupPool
from tpconform.transport.worker_tools import error_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")
# the two-bug file fails most properties on two variants: each property's test adds ~8 lines (200 until the
# mixed-precision check's two, which report once before the step, took it to ~204)
LINE_BUDGET = 210


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


@pytest.fixture(scope="module")
def pool():
    p = GroupPool(timeout_s=60.0)
    yield p
    p.close()


def case(**fields) -> LayerCase:
    base = dict(kind="column", world_size=2, in_features=4, out_features=6, batch_shape=(3,), dtype="float32",
                bias=True, gather_output=True, input_is_parallel=True, layout="contiguous", scale=1.0, seed=7)
    return LayerCase(**{**base, **fields})


# -- folding --------------------------------------------------------------------------------------
def test_ranks_with_the_same_symptom_are_one_line():
    assert rank_span([3]) == "rank 3" and rank_span([0, 1, 2, 3]) == "ranks 0-3"
    assert rank_span([0, 2, 3, 5]) == "ranks 0, 2-3, 5"
    lines = fold_ranks([(0, "rank 0 output: wrong by 1"), (1, "rank 1 output: wrong by 1"),
                        (2, "rank 2 output: wrong by 2"), (3, "rank 3 output: wrong by 1"), (None, "the run")])
    assert lines == ["ranks 0-1, 3 output: wrong by 1", "rank 2 output: wrong by 2", "the run"]


def test_the_worst_element_of_an_exact_move_is_one_that_is_wrong():
    """Exact elements of an exact comparison (0 error over 0 tolerance) are never named as the worst."""
    import torch
    from tpconform.spec.compare import compare

    expected = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    got = torch.tensor([[1.0, 3.0], [2.0, 4.0]], dtype=torch.float64)  # the transposed order
    found = compare(got, expected, torch.zeros_like(expected), "input grad")
    assert found is not None and found.bad == 2 and found.index == (0, 1) and found.actual == 3.0, str(found)


def test_an_idle_rank_is_one_line_and_equal_stacks_fold():
    idle = ('Thread 0x00007f38dc7146c0 (most recent call first):\n'
            '  File "/x/tpconform/transport/sandbox.py", line 95 in _watch\n\n'
            'Current thread 0x00007f38fee3ab80 (most recent call first):\n'
            '  File "/usr/lib/python3.11/multiprocessing/connection.py", line 395 in _recv\n'
            '  File "/x/tpconform/transport/worker.py", line 93 in main\n'
            '  File "/usr/lib/python3.11/multiprocessing/process.py", line 108 in run\n')
    busy = idle.replace('multiprocessing/connection.py", line 395 in _recv',
                        'my_layer.py", line 12 in forward')
    text = stacks.folded({0: busy, 1: idle, 2: idle.replace("0x00007f38fee3ab80", "0x1"), 3: ": was killed by SIGABRT"})
    assert f"--- ranks 1-2: {stacks.IDLE}" in text, text
    assert "--- rank 0 stack:" in text and "my_layer.py" in text and "_watch" not in text, text
    assert "process.py" not in text and "--- rank 3: was killed by SIGABRT" in text, text


def test_a_case_reports_a_symptom_shared_by_its_properties_once(pool):
    suite = Suite("bug-row-bias-every-rank", pool)
    c = case(kind="row", input_is_parallel=False, world_size=3, in_features=6)
    props = ["output_matches_the_dense_layer", "ranks_agree_on_the_output", "repeated_calls_are_independent"]
    ev, found = suite.judged(c, props)
    text = format_case_failure(ev, found, "bug-row-bias-every-rank")
    assert "ranks 0-2 output:" in text and "rank 1 output" not in text, text
    assert text.count("replay: ") == 1 and "--property" not in text, text
    brief = covering_report([text, text.replace("seed=7", "seed=8")])
    assert brief.count("replay: ") == 1 and "also failing:" in brief and "seed=8" in brief, brief
    whole = covering_report([text, text.replace("seed=7", "seed=8")], verbose=True)  # -v: every case in full
    assert whole.count("replay: ") == 2 and "also failing:" not in whole, whole


# -- what the candidate raised ----------------------------------------------------------------------
def _raises_here():
    import torch

    return torch.nn.functional.linear(torch.ones(2, 3), torch.ones(2, 2))


def test_an_error_shows_the_frames_of_the_code_under_test():
    try:
        _raises_here()
    except RuntimeError as exc:
        text = error_text(exc)
    assert text.startswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied"), text
    assert 'test_reports.py", line' in text and "_raises_here" in text, text
    assert "site-packages/torch" not in text and "^^^" not in text, text


def test_a_construction_error_shows_the_candidates_file_and_line_and_no_empty_batch_cause(pool):
    spec = fixture("simple_module_construct_raises_on_rank1.py")
    suite = Suite(spec, pool)
    ev, found = suite.checked(case(batch_shape=(0, 3)), "output_matches_the_dense_layer")
    text = "\n".join(v.message for v in found)
    assert "construction raised on rank(s) [1]" in text and "IndexError: tuple index out of range" in text, text
    assert 'simple_module_construct_raises_on_rank1.py", line 13, in __init__' in text, text
    assert "ConventionError" not in text and "rank 0:" not in text, text
    assert all("batch is empty" not in (family_of(ev.case).likely_cause(ev, v) or "") for v in found)


def test_no_hidden_copy_cause_for_a_missing_backward_all_reduce(pool):
    suite = Suite("bug-column-input-grad-not-reduced", pool)
    c = case(gather_output=False)
    ev, found = suite.checked(c, "communicates_what_the_other_ranks_need")
    assert found, "the missing backward all-reduce sends nothing"
    causes = [family_of(c).likely_cause(ev, v) or "" for v in found]
    assert not any("hidden copy" in cause for cause in causes), causes
    assert any("backward all-reduce is missing" in cause for cause in causes), causes


# -- a collective mismatch ----------------------------------------------------------------------------
def test_a_collective_mismatch_is_named_with_the_backends_message(pool):
    suite = Suite(fixture("simple_module_collective_mismatch.py"), pool)
    c = case(kind="row", world_size=3, in_features=6, out_features=5)
    _, found = suite.checked(c, "output_matches_the_dense_layer")
    text = "\n".join(v.message for v in found)
    assert "collective mismatch" in text, text
    assert "Received data size doesn't match expected size" in text, text  # Gloo's own words
    assert "a rank must never exit mid-example" not in text, text


def test_a_dead_rank_is_reported_with_the_last_lines_it_wrote_to_stderr(pool):
    suite = Suite(fixture("simple_module_exits_with_a_message.py"), pool)
    _, found = suite.checked(case(kind="row", world_size=2), "output_matches_the_dense_layer")
    text = "\n".join(v.message for v in found)
    assert "rank 1 exited (exit code 3)" in text, text
    assert "my_layer: giving up, the input slice is too small" in text, text


def test_verbose_keeps_pytests_own_report():
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:randomly", "--world-sizes=1-3",
                        "--impl=bug-row-bias-every-rank", "tests/properties/test_forward.py",
                        "-k", "output_matches and row-full-input"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "property violated: output matches the dense layer" in r.stdout
    assert "Failing test case" in r.stdout or "Falsifying example" in r.stdout, r.stdout[-3000:]  # Hypothesis's notes


# -- the whole report -------------------------------------------------------------------------------
def test_a_first_attempt_with_two_bugs_reports_in_a_bounded_number_of_lines(tmp_path):
    """A student's folder, their file with two bugs (column weight split along the wrong dim, row bias
    never added), the headline command: every failure's report in under LINE_BUDGET lines in all."""
    shutil.copy(fixture("simple_module_two_bugs.py"), tmp_path / "my_layer.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["CI"] = "true"  # where a gate runs; pytest then prints each failure's message in full in its summary
    # world sizes 1-4 (CI time): the same failures as at the defaults, fewer examples to run
    r = subprocess.run([sys.executable, "-m", "pytest", "--impl=my_layer.py", "--world-sizes=1-4", "--tp-timeout=120",
                        "-p", "no:cacheprovider"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    lines = out.splitlines()
    assert len(lines) < LINE_BUDGET, f"{len(lines)} lines:\n{out}"
    assert "property violated: shards rebuild the dense weight" in out and "split along the wrong dim" in out
    assert 'my_layer.py", line' in out, out  # the candidate's own file:line for what it raised
    assert "ranks 0-1 " in out, out  # ranks with the same symptom folded
    assert "replay: python -m tpconform replay --impl=my_layer.py" in out
    for internals in ("reproduce_failure", "Explanation:", "engine/suite.py", "Traceback"):
        assert internals not in out, internals
