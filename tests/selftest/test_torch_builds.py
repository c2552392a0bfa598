"""The build of torch most users have: the standard PyPI wheel, a CUDA build whose libraries map
~3.1 GB of address space before any work (an address-space limit once failed every impl there).

CI installs the CPU build (this machine's local wheel); the CUDA build is a few GB, so this test runs
where such an interpreter exists: ``TPCONFORM_CUDA_PYTHON=/path/to/python`` (a venv with the
tpconform dependencies and ``torch==2.13.0`` from PyPI, e.g. ``tox -e cuda-torch``, which sets it),
and skips with that reason elsewhere. It runs the complete default run against the reference with
that interpreter, from this checkout.
"""

from __future__ import annotations

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = os.environ.get("TPCONFORM_CUDA_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not (PYTHON and os.access(PYTHON, os.X_OK)),
    reason="no CUDA build of torch here: set TPCONFORM_CUDA_PYTHON to a python that has one (tox -e cuda-torch)")

PROBE = """
import os, torch
size = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
print(torch.version.cuda or "", size)
"""


def test_that_interpreter_has_the_multi_gb_cuda_build():
    r = subprocess.run([PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True)
    cuda, address_space = r.stdout.split()[-2:] if len(r.stdout.split()) == 2 else ("", r.stdout.split()[-1])
    assert cuda, f"{PYTHON} has a CPU build of torch"
    assert int(address_space) > 3 * 1024**3, f"only {int(address_space) / 2**30:.2f} GiB mapped after import torch"


def test_the_reference_passes_the_default_run_under_the_cuda_build():
    # python -m pytest from the checkout: this checkout's code, that interpreter's torch
    r = subprocess.run([PYTHON, "-m", "pytest", "--impl=reference", "-rs"], cwd=ROOT, capture_output=True,
                       text=True, timeout=1200)
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-2000:]
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert "failed" not in summary and " passed" in summary, summary
