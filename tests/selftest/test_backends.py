"""``--backend nccl``: one rank per GPU, world sizes above the GPU count skipped with the reason.

CI has no GPU: there the whole run must skip cleanly (exit 0, no worker started). Where GPUs are
present, the same properties must run and pass on NCCL for the world sizes that fit."""

import os
import subprocess
import sys

import pytest
from tpconform.transport import backends

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pytest(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop(backends.ENV, None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_world_sizes_above_the_gpu_count_are_dropped_with_the_reason(monkeypatch):
    monkeypatch.setattr(backends, "gpu_count", lambda: 2)
    kept, why = backends.runnable_world_sizes("nccl", [1, 2, 3, 4])
    assert kept == [1, 2] and "2 GPU(s)" in why and "[3, 4]" in why
    assert backends.runnable_world_sizes("gloo", [1, 8]) == ([1, 8], None)


@pytest.mark.skipif(backends.gpu_count() > 0, reason="this machine has GPUs: see the NCCL run below")
def test_nccl_without_gpus_skips_every_property_cleanly():
    r = _pytest("--backend=nccl", "tests/properties/test_forward.py")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "passed" not in r.stdout.splitlines()[-1] and "skipped" in r.stdout.splitlines()[-1]
    assert "--backend nccl places one rank per GPU and this machine has 0 GPU(s)" in r.stdout


@pytest.mark.skipif(backends.gpu_count() == 0, reason="no GPU here (CI has none)")
def test_nccl_runs_the_same_properties_on_the_gpus():
    top = min(backends.gpu_count(), 8)
    r = _pytest("--backend=nccl", f"--world-sizes=1-{top}", "--dtypes=float32,bfloat16",
                "tests/properties/test_forward.py", "tests/properties/test_gradients.py",
                "tests/properties/test_families.py", "-k", "mlp or primitive")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
