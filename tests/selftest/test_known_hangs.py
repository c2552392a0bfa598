"""Known hangs: a known-failures entry with ``timeout_s`` bounds the examples it applies to.

A library that loops forever on some inputs (DTensor's view propagation on empty batches) would
cost a full ``--tp-timeout`` and a group restart per example. Its entry's short bound makes each
such example a quick, explained failure — without hiding anything: a hang the entry does not
cover still fails after ``--tp-timeout``, a bounded example that finishes is judged in full, and a
hang entry whose examples all finish is stale. The fixture impl loops (pure Python, every rank) on
an empty batch of 2+ dims, as DTensor does.
"""

import os
import subprocess
import sys
import textwrap
import time

import pytest
from tpconform.engine.expecting import ExpectingSuite
from tpconform.engine.known_failures import Entry, KnownFailures, KnownFailuresError
from tpconform.engine.suite import Suite
from tpconform.families.linear.case import LayerCase
from tpconform.transport.harness import GroupPool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOOPS = "tests.selftest.fixtures.known_hang:LoopsOnEmptyBatch"
PROP = "output_matches_the_dense_layer"
EMPTY = LayerCase(kind="column", world_size=2, in_features=3, out_features=4, batch_shape=(0, 2), dtype="float32",
                  bias=True, seed=1)
FULL = LayerCase(**{**EMPTY.as_dict(), "batch_shape": (2, 3)})


def _hang_entry(**kw) -> Entry:
    fields = dict(id="loops", impl="*", property="*", reason="the fixture loops on an empty batch",
                  when={"batch_numel": 0, "batch_dims": ">=2"}, message="timed out after", timeout_s=1.0)
    return Entry(**{**fields, **kw})


@pytest.fixture(scope="module")
def suite():
    """The looping impl on its own pool, whose --tp-timeout (60 s) no test here may wait out."""
    pool = GroupPool(timeout_s=60.0)
    s = Suite(LOOPS, pool)
    s.check(FULL, PROP)  # starts the group and loads the impl: the timings below are the examples alone
    yield s
    pool.close()


def test_a_known_hang_is_bounded_by_its_entry_and_explained(suite):
    entry = _hang_entry()
    expecting = ExpectingSuite(suite, KnownFailures([entry]))
    started = time.monotonic()
    expecting.check(EMPTY, PROP)  # does not raise: the hang is the known deviation
    took = time.monotonic() - started
    assert took < 10, f"the example took {took:.1f} s: not bounded by the entry's timeout_s=1"
    assert expecting.used == [entry] and (entry.applicable, entry.matched) == (1, 1)
    assert not expecting.known.stale()
    suite.check(FULL, PROP)  # the group is rebuilt; the bound is gone again (a 1 s bound would still pass)
    assert suite.runner.example_timeout is None


def test_a_bounded_hang_the_entry_does_not_explain_fails_and_names_the_bound(suite):
    expecting = ExpectingSuite(suite, KnownFailures([_hang_entry(message="a message no hang prints")]))
    with pytest.raises(AssertionError) as exc:
        expecting.check(EMPTY, PROP)
    assert "example bounded at 1 s by known failure loops, not --tp-timeout" in str(exc.value)
    assert "timed out after" in str(exc.value)


def test_a_bounded_example_that_finishes_is_judged_and_its_entry_goes_stale(suite):
    entry = _hang_entry(when={"batch_numel": ">0"})
    expecting = ExpectingSuite(suite, KnownFailures([entry]))
    expecting.check(FULL, PROP)
    assert (entry.applicable, entry.matched) == (1, 0) and expecting.known.stale() == [entry]


def test_a_hang_no_entry_covers_still_fails_after_the_tp_timeout():
    pool = GroupPool(timeout_s=3.0)
    try:
        expecting = ExpectingSuite(Suite(LOOPS, pool), KnownFailures([_hang_entry(when={"world_size": 1})]))
        started = time.monotonic()
        with pytest.raises(AssertionError) as exc:
            expecting.check(EMPTY, PROP)
        assert time.monotonic() - started >= 3.0
        assert "limit 3.0 s, --tp-timeout" in str(exc.value) and "bounded at" not in str(exc.value)
    finally:
        pool.close()


def test_the_smallest_bound_of_the_entries_that_apply_wins():
    known = KnownFailures([_hang_entry(id="a", timeout_s=5), _hang_entry(id="b", timeout_s=2),
                           _hang_entry(id="c", timeout_s=1, when={"world_size": 3}), Entry("d", "*", "*", "r")])
    assert known.bound("x", PROP, EMPTY).id == "b"
    assert known.bound("x", PROP, FULL) is None
    assert all(e.applicable == 0 for e in known.entries)  # choosing the bound counts nothing


@pytest.mark.parametrize("extra, says", [
    ("timeout_s = 0", "'timeout_s' must be a positive number"),
    ("timeout_s = '3'", "'timeout_s' must be a positive number"),
    ("timeout_s = true", "'timeout_s' must be a positive number"),
    ("test = 'test_mlp_matches_the_dense_mlp'\nmessage = 'x'\ntimeout_s = 3", "a whole-test entry"),
])
def test_a_bad_timeout_gets_one_clear_line(tmp_path, extra, says):
    path = tmp_path / "bad.toml"
    path.write_text(f"[[deviation]]\nid = 'x'\nimpl = '*'\nproperty = '*'\nreason = 'r'\n{extra}\n")
    with pytest.raises(KnownFailuresError) as exc:
        KnownFailures.load([str(path)])
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_a_known_hang_is_an_xfail_under_pytest(tmp_path):
    """End to end: under a 60 s --tp-timeout, the hanging examples end in ~1 s each and the test
    is reported as xfail naming the entry."""
    known = tmp_path / "known.toml"
    known.write_text(textwrap.dedent("""
        [[deviation]]
        id = "loops-on-empty-batch"
        impl = "*"
        property = "*"
        when = { batch_numel = 0, batch_dims = ">=2" }
        message = "timed out after"
        timeout_s = 1
        reason = "the fixture loops forever on an empty batch of 2+ dims"
    """))
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--impl={LOOPS}",
                        f"--known-failures={known}", "--world-sizes=1-2", "--tp-timeout=60", "-rx",
                        "tests/properties/test_forward.py", "-k", "output_matches and column-gathered"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 xfailed" in r.stdout and "expected deviation loops-on-empty-batch" in r.stdout, r.stdout[-3000:]
    assert "(a hang, bounded at 1 s)" in r.stdout, r.stdout[-3000:]
    assert took < 60, f"{took:.0f} s: some hanging example waited out --tp-timeout"
