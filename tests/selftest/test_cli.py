"""The suite as a user drives it from the command line: pytest --impl=..., replay, bad input."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join("tests", "selftest", "fixtures")


def run(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def pytest_run(*args):
    return run("-m", "pytest", "-q", "-p", "no:randomly", "--world-sizes=1-3", *args)


@pytest.mark.parametrize("spec, says", [
    ("does-not-exist", "unknown impl"),
    ("no/such/file.py", "no such file"),
    (os.path.join(FIXTURES, "simple_module_missing_row.py"), "lacks RowParallelLinear"),
    (os.path.join(FIXTURES, "simple_module_import_error.py"), "No module named 'this_module_does_not_exist'"),
    ("tpconform.impls.reference:NoSuchClass", "has no attribute 'NoSuchClass'"),
    (os.path.join(FIXTURES, "simple_module_other_signature.py"), "cannot be called with four arguments"),
    (os.path.join(FIXTURES, "simple_module_declares_other_variants.py"), "never tells a layer which"),
    (os.path.join(FIXTURES, "adapter_named_without_class.py"),
     "--impl=tests.selftest.fixtures.adapter_named_without_class:Adapter"),
    ("tests.selftest.fixtures.adapter_named_without_class", "defines the adapter Adapter"),
])
def test_bad_impl_gets_one_clear_line_and_a_nonzero_exit(spec, says):
    r = pytest_run(f"--impl={spec}")
    assert r.returncode not in (0, 1, 5), r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0], r.stderr
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("spec", ["does-not-exist", "no/such/file.py",
                                  os.path.join(FIXTURES, "simple_module_import_error.py")])
def test_a_typo_or_a_missing_import_is_told_before_torch_is_imported_anywhere(spec):
    """What the source alone tells (no such name or file, a leading import of a module that does not exist)
    is told before the forkserver starts: no process of the run imports torch (the environment's
    PYTHONPROFILEIMPORTTIME reaches every process, workers and forkserver included)."""
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONPROFILEIMPORTTIME": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--impl={spec}"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 4, r.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "tpconform.engine.profiles" in imported  # the measure reaches this process (the plugin imports it)
    assert "torch" not in imported
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR:")], r.stderr[-2000:]


def test_list_impls_names_the_reference_and_the_zoo():
    r = pytest_run("--list-impls")
    assert r.returncode == 0
    assert "reference" in r.stdout and "bug-row-bias-every-rank" in r.stdout and "[seeded bug]" in r.stdout


def test_a_correct_simple_module_file_passes():
    r = pytest_run(f"--impl={os.path.join(FIXTURES, 'simple_module_good.py')}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "skipped" in r.stdout  # the convention has no sharded column output / full row input


def test_a_row_bias_on_rank_0_only_conforms():
    """The spec: a row bias may live on some ranks only, as long as it is added once. The file adapter
    once wrote the bias into every rank's layer and failed construction ('NoneType' ... 'copy_')."""
    r = pytest_run(f"--impl={os.path.join(FIXTURES, 'simple_module_bias_on_rank0.py')}", "-k", "row-",
                   "--tp-timeout=120")
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_a_seeded_bug_fails_with_a_minimal_example_a_cause_and_a_replay_command():
    r = pytest_run("--impl=bug-row-bias-every-rank", "tests/properties/test_forward.py",
                   "-k", "output_matches and row-full-input")
    out = r.stdout
    assert r.returncode == 1, out[-3000:]
    assert "property violated: output matches the dense layer" in out
    assert "case: row layer, world_size=2" in out  # the shrunk case, in the report itself
    assert "reproduce_failure" not in out and "Explanation:" not in out  # nothing about the suite's own code
    assert "likely cause: the output is off by 1× the bias" in out
    replay = next(ln.split("replay: ", 1)[1] for ln in out.splitlines() if "replay: python -m tpconform" in ln)
    rr = run(*replay.split()[1:])  # drop "python"
    assert rr.returncode == 1 and "property violated" in rr.stdout, rr.stdout + rr.stderr


def test_a_buggy_simple_module_file_fails():
    r = pytest_run(f"--impl={os.path.join(FIXTURES, 'simple_module_bias_every_rank.py')}",
                   "tests/properties/test_forward.py", "-k", "output_matches")
    assert r.returncode == 1, r.stdout[-3000:]
    assert "row-sliced-input" in r.stdout and "property violated" in r.stdout
