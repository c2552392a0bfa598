"""Hostile and careless submissions never pass: each one tried here must fail, cleanly.

The verdict runs in this process, which never imports the candidate; the candidates
(``tests/selftest/fixtures/hostile``) run in worker processes and can only send plain tensors
back. Every submission below tries to pass without being correct, or to take the harness down;
each must produce a violation (never a pass, never a crash of the verdict), and the next example
(the reference, on a rebuilt group) must pass.
"""

import os
import subprocess
import sys

import pytest
from tpconform.engine.runner import ImplUnusable
from tpconform.engine.suite import Suite
from tpconform.families.linear import verdict
from tpconform.families.linear.case import LayerCase
from tpconform.transport.harness import GroupPool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H = "tests.selftest.fixtures.hostile."
CASE = LayerCase(kind="column", world_size=2, in_features=4, out_features=4, batch_shape=(3,), dtype="float32",
                 bias=True, seed=1)
CHECKED = ("output_matches_the_dense_layer", "weight_grad_matches_the_dense_layer")

# (adapter, text the failure must contain)
HOSTILE = [
    ("exits:SysExit0", "SystemExit"),
    ("exits:OsExit0", "exited (exit code 0)"),
    ("exits:OsExit0OnRank1", "rank 1 exited (exit code 0)"),
    ("exits:PytestNoTestsExitCode", "exited (exit code 5)"),
    ("exits:TorchSkipExitCode", "SystemExit: 73"),
    ("exits:PytestSkip", "Skipped: nothing to see here"),
    ("exits:UnittestSkip", "SkipTest: nothing to see here"),
    ("patching:PatchesComparisons", "outside tolerance"),
    ("subclass:ReturnsAlwaysEqualTensors", "outside tolerance"),
    ("nontensors:ReturnsList", "the layer's output is a list, not a tensor"),
    ("nontensors:ReturnsNumpy", "the layer's output is a ndarray, not a tensor"),
    ("nontensors:ReturnsNone", "the layer's output is a NoneType, not a tensor"),
    ("nontensors:ReturnsLookalike", "the layer's output is a _Fake, not a tensor"),
    ("forgery:ForgesReply", "sent a malformed result"),
    ("forgery:ForgesPickle", "refused to load global"),
    ("forgery:ForgesNextReply", "answered out of turn"),
    ("forgery:FloodsThePipe", "sent a message over 256 MiB"),
    ("tamper:ZeroesGivenWeights", "outside tolerance"),
    ("snooping:ReadsExpectedValues", "outside tolerance"),
    ("resources:SpinsForever", "timed out after"),
    ("resources:SleepsForever", "timed out after"),
]


@pytest.fixture(scope="module")
def pool():
    p = GroupPool(timeout_s=3.0, memory_limit=1536 * 1024**2)
    yield p
    p.close()


def violations(pool, spec):
    ev = Suite(spec, pool).evidence(CASE)
    return [v.message for name in CHECKED for v in verdict.evaluate(ev, name)]


@pytest.mark.parametrize("spec, says", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_submission_fails_cleanly(pool, spec, says):
    found = violations(pool, H + spec)
    assert found, f"{spec} passed"
    assert any(says in m for m in found), found[0][:3000]
    assert violations(pool, "reference") == [], "the next example, on a rebuilt group, must pass"


def test_the_pickle_payload_never_ran(pool):
    marker = "/tmp/tpconform-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    violations(pool, H + "forgery:ForgesPickle")
    assert not os.path.exists(marker)


def test_monkeypatching_in_the_worker_leaves_the_verdict_untouched(pool):
    import torch
    from tpconform.spec import compare, tolerance
    before = (torch.allclose, torch.testing.assert_close, compare.compare, tolerance.bound,
              dict(verdict.SPEC))
    violations(pool, H + "patching:PatchesComparisons")
    after = (torch.allclose, torch.testing.assert_close, compare.compare, tolerance.bound, dict(verdict.SPEC))
    assert before == after


@pytest.mark.parametrize("spec", ["AllocatesForever", "ChildAllocatesForever"])
def test_memory_hog_is_stopped_by_the_limit_not_the_machine(spec):
    """Resident memory is measured from outside the worker and its tree is killed over the limit
    (own pool: touching 1 GiB takes seconds on a loaded VM, past the 3 s hang bound of the others)."""
    own = GroupPool(timeout_s=30.0, memory_limit=1024**3)
    try:
        found = violations(own, H + "resources:" + spec)
        assert violations(own, "reference") == [], "the next example, on a rebuilt group, must pass"
    finally:
        own.close()
    assert any("was killed for using" in m and "over the limit of 1.00 GiB (--tp-memory-limit)" in m
               for m in found), found[0][:2000]


@pytest.mark.parametrize("spec", ["DeclaresNothing", "DeclaresOnlyAnotherDtype"])
def test_declaring_nothing_checkable_is_an_error_not_an_all_skipped_pass(pool, spec):
    from tpconform.pytest_plugin.plugin import nothing_to_check

    suite = Suite(H + "declares_nothing:" + spec, pool, dtypes=("float32", "bfloat16"))
    assert nothing_to_check(suite)
    assert nothing_to_check(Suite("reference", pool, dtypes=("float32",))) is None


def test_exiting_while_loading_is_a_clear_error(pool):
    with pytest.raises(ImplUnusable, match="exited .exit code 0. during loading the impl"):
        Suite(H + "exits:ExitWhileLoading", pool).description


def test_a_submission_that_exits_0_fails_the_pytest_run():
    """End to end, as a grader runs it: a simple-module file calling ``os._exit(0)`` in forward."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "--world-sizes=2",
                        "--tp-timeout=5", "--impl=tests/selftest/fixtures/hostile/simple_module_exit0.py",
                        "tests/properties/test_forward.py", "-k", "output_matches"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "exited (exit code 0)" in out and "passed" not in out.splitlines()[-1], out[-3000:]
    # the group is rebuilt and the run goes on: both variants the convention declares fail
    assert "FAILED" in out and "[column-gathered]" in out and "[row-sliced-input]" in out, out[-3000:]
