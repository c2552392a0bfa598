"""Hangs and crashes become clean, bounded failures; nothing is ever left behind.

- a rank that deadlocks, sleeps, raises alone, segfaults or exits fails the example within the
  timeout (``--tp-timeout``), naming the rank(s) and showing every rank's Python stack; the group
  is rebuilt and the next example passes;
- a worker's descendants (even in a new session, even daemonized) die with its group;
- killing the verdict process (SIGKILL, SIGTERM) or Ctrl-C on a pytest run leaves no process and
  no temporary file behind (counted: the run's whole process tree, before and after);
- every group has its own rendezvous, so groups side by side never collide; a group started in the
  background is the one used, and one whose start failed leaves nothing behind.
"""

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from tpconform.engine.runner import probe_sums
from tpconform.engine.suite import Suite
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.run import run as run_case
from tpconform.families.subgroups.verdict import run as run_groups
from tpconform.transport import proctree
from tpconform.transport.harness import GroupFailure, GroupPool

from tests.selftest.fixtures.hostile.hangs import escapee_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H = "tests.selftest.fixtures.hostile.hangs:"
TIMEOUT = 3.0
PATIENT = 60.0
CASE = LayerCase(kind="column", world_size=2, in_features=4, out_features=4, batch_shape=(3,), dtype="float32",
                 bias=True, seed=1)


@pytest.fixture(scope="module")
def pool():
    p = GroupPool(timeout_s=TIMEOUT)
    yield p
    p.close()


@pytest.fixture(scope="module")
def patient_pool():
    """A long timeout: raising and crashing ranks must fail the example long before it."""
    p = GroupPool(timeout_s=PATIENT)
    yield p
    p.close()


def run(pool, spec):
    started = time.monotonic()
    outcome = run_case(Suite(spec, pool).runner, CASE)
    return outcome, time.monotonic() - started


def next_example_passes(pool):
    outcome, _ = run(pool, "reference")
    assert outcome.crash is None and outcome.ranks, outcome.crash


@pytest.mark.parametrize("spec, says, in_stack", [
    ("SkipsCollectiveOnRank1", "rank(s) [0] did not reply within the grace period after rank(s) [1] finished",
     "all_gather"),
    ("SleepsOnRank1", "rank(s) [0, 1] did not reply", "in forward"),
])
def test_a_hang_fails_in_bounded_time_naming_the_ranks_with_every_stack(pool, spec, says, in_stack):
    outcome, seconds = run(pool, H + spec)
    text = outcome.crash or ""
    late = "rank(s) [0] did not reply, rank(s) [1] did"  # loaded: rank 1 finished so late the grace outran the timeout
    assert says in text or (spec == "SkipsCollectiveOnRank1" and late in text), text[:3000]
    if spec == "SleepsOnRank1":  # nobody finished: the full --tp-timeout applies
        assert "timed out after" in text and f"(limit {TIMEOUT:.1f} s, --tp-timeout)" in text, text[:3000]
    assert "--- rank 0 stack:" in text and in_stack in text, text
    assert "--- rank 1 stack:" in text or "--- rank 1: idle in the worker loop" in text, text  # every rank named
    assert "hangs.py" in text or spec == "SkipsCollectiveOnRank1"
    assert seconds < TIMEOUT + 15.0, f"{seconds:.1f} s from the hang to the failure"  # generous: loaded CI
    starts = pool.starts
    next_example_passes(pool)
    assert pool.starts == starts + 1, "the broken group is torn down and rebuilt"


def test_a_rank_that_raises_alone_fails_fast_with_its_error(patient_pool):
    outcome, seconds = run(patient_pool, H + "RaisesOnRank1")
    assert "rank(s) [1] raised" in outcome.crash and "rank 1 gave up" in outcome.crash, outcome.crash
    assert "--- rank 0 stack:" in outcome.crash or "--- rank 0: idle in the worker loop" in outcome.crash
    assert seconds < PATIENT / 3, "the other ranks get a short grace, not the whole timeout"
    next_example_passes(patient_pool)


def test_a_raise_on_a_group_of_one_keeps_the_group(patient_pool):
    """One rank has no peer to leave mid-collective: its group is reused after it raised (no start-up per
    crash: a first attempt's crashes shrink at world size 1), and the next example runs on it."""
    case = LayerCase(kind="column", world_size=1, in_features=2, out_features=1, batch_shape=(), dtype="float32",
                     bias=False, seed=0)
    suite = Suite(os.path.join(ROOT, "tests", "selftest", "fixtures", "simple_module_two_bugs.py"), patient_pool)
    first = run_case(suite.runner, case)
    assert first.crash and "rank 0 raised" in first.crash, first.crash
    starts = patient_pool.starts
    again = run_case(suite.runner, case)
    assert again.crash and "rank 0 raised" in again.crash and patient_pool.starts == starts


def test_a_group_every_rank_of_which_raised_is_kept_when_its_probe_comes_back_right(patient_pool):
    """Every rank raised (none waits in a collective) and a probe (an all-reduce and a barrier, its sum checked
    by the verdict) comes back right: the group is reused, no start-up, and the next example passes on it."""
    outcome, seconds = run(patient_pool, H + "RaisesOnEveryRank")
    assert "rank 0 gave up" in outcome.crash and "rank 1 gave up" in outcome.crash, outcome.crash
    starts = patient_pool.starts
    next_example_passes(patient_pool)
    assert patient_pool.starts == starts, "the group was started again"


def test_a_group_left_out_of_step_is_started_again(patient_pool):
    """Every rank raised, but rank 0 left an all-reduce behind: the probe does not come back right, the group
    is started again, and the next example passes on the new one."""
    run(patient_pool, "reference")  # the group up before the count
    starts = patient_pool.starts
    outcome, seconds = run(patient_pool, H + "LeavesACollectiveBehindAndRaises")
    assert "gave up" in outcome.crash, outcome.crash
    assert seconds < PATIENT / 3
    next_example_passes(patient_pool)
    assert patient_pool.starts == starts + 1, "the group out of step was reused"


def test_a_tp_sub_group_left_out_of_step_is_started_again(patient_pool):
    """The probe checks each TP sub-group the workers keep as well as the world: a rank that left an
    all-reduce behind on its sub-group (the world in step) loses the group, and the next example passes."""
    sub = dataclasses.replace(CASE, world_size=4, tp_size=2)
    assert run_groups(Suite("reference", patient_pool), sub)[0].crash is None  # the sub-groups made, in step
    starts = patient_pool.starts
    outcome = run_groups(Suite(H + "LeavesASubgroupCollectiveBehindAndRaises", patient_pool), sub)[0]
    assert "gave up" in outcome.crash, outcome.crash
    again = run_groups(Suite("reference", patient_pool), sub)[0]
    assert again.crash is None, again.crash
    assert patient_pool.starts == starts + 1, "the group out of step was reused"


def test_probe_sums_are_the_worlds_and_each_sub_groups():
    assert probe_sums(2, 4, {"sums": {"0": 0.0, "2": 0.0}}) == {"0": 10.0, "2": 7}  # ranks 2, 3: 3 + 4
    assert probe_sums(0, 4, {"sums": {"0": 0.0}}) == {"0": 10.0}
    assert probe_sums(0, 4, {"sums": "forged"}) is None and probe_sums(0, 4, {}) is None


@pytest.mark.parametrize("spec, says", [
    ("SegfaultsOnRank1", "rank 1 was killed by SIGSEGV"),
    ("tests.selftest.fixtures.hostile.exits:OsExit0OnRank1", "rank 1 exited (exit code 0)"),
])
def test_a_crashed_rank_fails_at_once(patient_pool, spec, says):
    outcome, seconds = run(patient_pool, spec if ":" in spec else H + spec)
    assert says in outcome.crash and "--- rank 0: idle in the worker loop" in outcome.crash, outcome.crash
    assert seconds < PATIENT / 3, "a dead rank is seen at once, not at the timeout"
    next_example_passes(patient_pool)


def test_a_rank_that_ignores_signals_still_shows_its_stack_and_is_killed(pool):
    outcome, _ = run(pool, H + "IgnoresSignalsAndHangs")
    assert "its watchdog's dump from just before the timeout" in outcome.crash, outcome.crash
    assert "hangs.py" in outcome.crash and "in forward" in outcome.crash
    next_example_passes(pool)


@pytest.mark.parametrize("spec", ["ForksEscapeesAndReturns", "ForksEscapeesAndHangs"])
def test_processes_a_candidate_forks_die_with_its_group(pool, spec):
    path = escapee_file(os.getpid())
    if os.path.exists(path):
        os.unlink(path)
    outcome, _ = run(pool, H + spec)
    pool.close()
    with open(path) as fh:
        escapees = [int(line) for line in fh if line.strip()]
    os.unlink(path)
    assert len(escapees) >= 4
    deadline = time.monotonic() + 5
    while any(proctree.alive(p) for p in escapees) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in escapees if proctree.alive(p)] == []


def test_a_group_started_in_the_background_is_taken_or_started_again():
    """``GroupPool.start_in_background`` (pytest starts every world size's group while it collects): ``get``
    takes the group it started, once prepared; a start whose ``prepare`` failed closes its group (no rank is
    left) and ``get`` starts one itself, where the failure would have been met without the background start."""
    pool = GroupPool(timeout_s=TIMEOUT)
    try:
        prepared: list = []
        pool.start_in_background([1], prepare=prepared.append)
        group = pool.get(1)
        assert prepared == [group] and group.healthy and pool.starts == 1
        group.close()

        def fails(g):
            prepared.append(g)
            raise GroupFailure("seeded: loading the impl failed")

        pool.start_in_background([1], prepare=fails)
        again = pool.get(1)
        failed = prepared[-1]
        assert failed is not again and failed.ranks == [] and not failed.healthy, "the failed start left its ranks"
        assert again.healthy and pool.starts == 2
    finally:
        pool.close()


def test_groups_side_by_side_have_their_own_rendezvous():
    a, b = GroupPool(timeout_s=10.0), GroupPool(timeout_s=10.0)
    try:
        ga, gb = a.get(2), b.get(2)
        assert ga.store.port != gb.store.port
        for p in (a, b, a):
            outcome = run_case(Suite("reference", p).runner, CASE)
            assert outcome.crash is None
    finally:
        a.close()
        b.close()


# -- the verdict process goes away -----------------------------------------------------------------
CHILD = """
import sys
sys.path.insert(0, {root!r})
from tpconform.families.linear.case import LayerCase
from tpconform.transport.harness import GroupFailure, GroupPool
from tpconform.engine.suite import Suite
case = LayerCase(kind="column", world_size=2, in_features=4, out_features=4, batch_shape=(3,),
                 dtype="float32", bias=True, seed=1)
Suite("tests.selftest.fixtures.hostile.hangs:ForksEscapeesAndHangs", GroupPool(timeout_s=120.0)).evidence(case)
"""


SHM_PREFIXES = ("torch", "sem.mp", "psm_", "tpconform", "gloo")


def _shm():
    return {f for f in os.listdir("/dev/shm") if f.startswith(SHM_PREFIXES)}


def _in_use_elsewhere(names, tree) -> set:
    """The /dev/shm files among ``names`` that a live process outside ``tree`` has mapped: another test's
    (the other xdist worker runs its own groups at the same time), not this run's leftovers."""
    if not names:
        return set()
    mine, used = {int(p) for p in tree}, set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in mine:
            continue
        try:
            with open(f"/proc/{pid}/maps") as fh:
                maps = fh.read()
        except OSError:
            continue
        used.update(n for n in names if f"/dev/shm/{n}" in maps)
    return used


def _leftovers(tree, tmp, shm_before, deadline_s=15.0):
    """Processes of the run's tree still alive (zombies excluded: they hold nothing, not even a
    port) and files left in its TMPDIR or /dev/shm, once they stop changing or time is up."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        alive = [p for p in tree if proctree.alive(p)]
        new_shm = _shm() - shm_before
        files = [f for f in os.listdir(tmp) if not f.startswith("torchinductor")] + sorted(
            new_shm - _in_use_elsewhere(new_shm, tree))
        if not alive and not files:
            break
        time.sleep(0.1)
    return alive, files


def _start(args, tmp):
    # SIGINT at its default in the child, as in a terminal: a test run started in the background by a shell
    # without job control (`nohup ... &`) ignores it, and the child would inherit that
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "TMPDIR": tmp, "PYTHONPATH": ROOT},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_escapees(proc, n=4, timeout=120.0):
    path = escapee_file(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as fh:
                if len(fh.read().split()) >= n:
                    time.sleep(0.2)
                    return path
        assert proc.poll() is None, "the run ended before its workers hung"
        time.sleep(0.1)
    raise AssertionError("the workers never started")


def test_killing_the_verdict_process_leaves_nothing_behind():
    """SIGKILL: no clean-up code runs in the verdict (SIGTERM and a pytest-timeout's ``os._exit``
    are the same case for Python: default action, no atexit)."""
    shm_before = _shm()
    with tempfile.TemporaryDirectory(prefix="tpconform-selftest-") as tmp:
        proc = _start([sys.executable, "-c", CHILD.format(root=ROOT)], tmp)
        path = _wait_for_escapees(proc)
        tree = proctree.descendants([proc.pid])
        assert len(tree) >= 2 + 2 + 4  # forkserver, resource tracker, 2 workers, their escapees
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        alive, files = _leftovers(tree, tmp, shm_before)
        os.unlink(path)
        assert alive == [] and files == []


def test_ctrl_c_on_a_pytest_run_leaves_nothing_behind():
    shm_before = _shm()
    with tempfile.TemporaryDirectory(prefix="tpconform-selftest-") as tmp:
        proc = _start([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "--world-sizes=2",
                       "--tp-timeout=120", f"--impl={H}ForksEscapeesAndHangs",
                       "tests/properties/test_forward.py", "-k", "output_matches and column-gathered"], tmp)
        path = _wait_for_escapees(proc)
        tree = proctree.descendants([proc.pid])
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        assert proc.wait(30) == 2  # pytest: interrupted
        alive, files = _leftovers(tree, tmp, shm_before)
        os.unlink(path)
        assert alive == [] and files == []
