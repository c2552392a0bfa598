"""Paths where a correct layer could fail, or a failure be blamed on the layer, for reasons that are
not its own: each one found gets a test here (the complete default run against every correct impl
is ``test_default_run.py``; the CUDA build of torch is ``test_torch_builds.py``)."""

from __future__ import annotations

import os

import pytest
import torch
from tpconform.engine.suite import Suite
from tpconform.families.linear import verdict
from tpconform.families.linear.case import LayerCase
from tpconform.families.linear.diagnosis import likely_cause
from tpconform.families.subgroups.family import FAMILY as SUBGROUPS
from tpconform.impls.simple_module import SimpleModuleImpl
from tpconform.strategies import VARIANTS
from tpconform.transport import backends
from tpconform.transport.harness import GroupPool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOOD = os.path.join(ROOT, "tests", "selftest", "fixtures", "simple_module_good.py")
CASE = LayerCase(kind="column", world_size=2, in_features=4, out_features=4, batch_shape=(3,), dtype="float32",
                 bias=True, seed=1)


@pytest.fixture(scope="module")
def pool():
    p = GroupPool(timeout_s=30.0)
    yield p
    p.close()


def test_simple_module_layers_are_not_handed_a_sub_group(pool):
    """The convention takes rank and world size from the default group: the TP sub-group checks do not
    apply to it, and say so in one line naming the convention."""
    suite = Suite(GOOD, pool)
    assert suite.capabilities.accepts_group is False
    why = SUBGROUPS.not_applicable(suite, VARIANTS[0], "output_matches_the_dense_layer")
    assert why and why.startswith("not applicable: the simple-module convention's layers") and "\n" not in why
    assert SUBGROUPS.not_applicable(Suite("reference", pool), VARIANTS[0], "output_matches_the_dense_layer") is None


def test_a_module_cannot_declare_that_its_simple_module_layers_take_a_group():
    class Module:
        TP_CAPABILITIES = {"accepts_group": True, "dtypes": ["float32"]}
        ColumnParallelLinear = RowParallelLinear = object

    impl = SimpleModuleImpl(Module, name="m.py")
    assert impl.capabilities.accepts_group is False and impl.capabilities.dtypes == ("float32",)


def test_gloos_equal_size_all_gather_is_named_as_the_cause(pool):
    """NCCL gathers uneven tensors, Gloo refuses them: the report says so instead of leaving the crash
    unexplained (the layer may be correct on its real backend)."""
    suite = Suite("tests.selftest.fixtures.uneven_gather:GathersUnevenShards", pool)
    ev = suite.evidence(CASE)
    found = verdict.evaluate(ev, "output_matches_the_dense_layer")
    assert found, "the crash must be reported"
    causes = [likely_cause(ev, v) or "" for v in found]
    assert any("Gloo's all_gather needs every rank's tensor the same size" in c for c in causes), (found, causes)


def test_gpu_workers_use_full_precision_reductions(monkeypatch):
    """torch's GPU defaults let cuBLAS reduce float16/bfloat16 in 16 bits (and allow TF32): a plain
    F.linear would then exceed the tolerance model's float32 accumulation. The NCCL worker set-up turns
    them off before any candidate code (checked here with the CUDA calls stubbed: no GPU in CI)."""
    matmul = torch.backends.cuda.matmul
    saved = (matmul.allow_tf32, matmul.allow_fp16_reduced_precision_reduction,
             matmul.allow_bf16_reduced_precision_reduction, torch.backends.cudnn.allow_tf32)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch, "set_default_device", lambda device: None)
    monkeypatch.setattr(torch, "empty", lambda *a, **k: None)
    try:
        matmul.allow_tf32 = True
        matmul.allow_fp16_reduced_precision_reduction = True
        matmul.allow_bf16_reduced_precision_reduction = True
        torch.backends.cudnn.allow_tf32 = True
        backends.set_up_device("nccl", 0)
        assert not matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert not matmul.allow_fp16_reduced_precision_reduction
        assert not matmul.allow_bf16_reduced_precision_reduction
    finally:
        (matmul.allow_tf32, matmul.allow_fp16_reduced_precision_reduction,
         matmul.allow_bf16_reduced_precision_reduction, torch.backends.cudnn.allow_tf32) = saved


def test_replaying_a_sub_group_case_on_a_simple_module_says_it_does_not_apply():
    import subprocess
    import sys

    case = LayerCase(kind="row", world_size=4, in_features=2, out_features=2, batch_shape=(2,), dtype="float32",
                     bias=True, input_is_parallel=True, seed=0, tp_size=2)
    r = subprocess.run([sys.executable, "-m", "tpconform", "replay", f"--impl={GOOD}", case.token()], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().startswith("replay: not applicable: the simple-module"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_slow_one_time_set_up_is_not_a_hang():
    """``impl.setup`` runs once per rank of a new group under the impl's ``setup_timeout_s``; with a
    per-example bound of 3 s, a 5 s set-up would otherwise fail the first example as a hang."""
    pool = GroupPool(timeout_s=3.0)
    try:
        suite = Suite("tests.selftest.fixtures.slow_setup:SetsUpSlowly", pool)
        for ws in (1, 2):
            ev = suite.evidence(LayerCase(kind="row", world_size=ws, in_features=4, out_features=3, batch_shape=(2,),
                                          dtype="float32", bias=True, seed=2))
            assert ev.outcome.crash is None, ev.outcome.crash
            assert verdict.evaluate(ev, "output_matches_the_dense_layer") == []
    finally:
        pool.close()


def test_a_lock_left_by_a_killed_extension_build_is_removed_and_a_live_one_kept(tmp_path):
    """torch's cpp_extension waits forever on a build folder's ``lock``; a worker killed while it
    compiled (DeepSpeed's comm extension, ~2.5 min) leaves it behind."""
    import subprocess
    import time as clock

    from tpconform.transport.stale_locks import MIN_AGE_S, remove_stale_extension_locks

    old = clock.time() - MIN_AGE_S - 5
    stale, fresh, live = (tmp_path / "py311_cpu" / n for n in ("killed_build", "starting_build", "live_build"))
    for folder in (stale, fresh, live):
        folder.mkdir(parents=True)
        (folder / "lock").write_text("")
    for folder in (stale, live):
        os.utime(folder / "lock", (old, old))
    compiler = subprocess.Popen(["sleep", "30"], cwd=live)  # a build runs its compiler in its folder
    try:
        removed = remove_stale_extension_locks([str(tmp_path)])
    finally:
        compiler.kill()
        compiler.wait()
    assert removed == [str(stale / "lock")]
    assert (fresh / "lock").exists() and (live / "lock").exists() and not (stale / "lock").exists()


def test_a_python_environment_under_tmp_stays_visible_in_the_grading_sandbox(monkeypatch):
    """The sandbox mounts a private /tmp; a venv that lives under /tmp (a CI checkout's) must be bound
    on top of it, or bwrap cannot even start the interpreter and every correct submission is refused."""
    from tpconform.grading import bwrap

    monkeypatch.setattr(bwrap, "executable", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(bwrap, "_python_roots", lambda: ["/tmp/ci-checkout/.venv"])
    argv = bwrap.command(["python"], suite_dir="/tmp/suite", submission_dir="/tmp/sub", cwd="/submission", env={})
    tmpfs = argv.index("/tmp", argv.index("--tmpfs"))
    assert argv.index("/tmp/ci-checkout/.venv") > tmpfs
