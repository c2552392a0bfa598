"""A submission that does not import is graded in well under 5 s: the verdict reads its leading
imports before it starts the forkserver or imports torch (``tpconform.impls.preflight``), and never
calls a file unimportable that imports."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from tpconform.impls.preflight import static_reason

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "selftest", "fixtures")


def _write(folder, files: dict) -> None:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.mark.parametrize("files, spec, says", [
    ({"a.py": '"""doc"""\nfrom __future__ import annotations\nimport os, torch\nimport not_a_module_anywhere\n'},
     "a.py", "importing it failed: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
    ({"a.py": "import torch\nfrom helpers import f\n", "helpers.py": "import numpy\nimport not_there.sub\n"},
     "a.py", "importing it failed: ModuleNotFoundError: No module named 'not_there'"),  # through its own module
    ({"a.py": "import torch\ndef f(:\n"}, "a.py", "importing it failed: SyntaxError: "),
    ({"layers/__init__.py": "import torch\n", "layers/adapter.py": "import torch\nfrom nope import x\n"},
     "layers.adapter:Impl", "importing layers.adapter failed: ModuleNotFoundError: No module named 'nope'"),
])
def test_a_file_that_cannot_import_is_told_from_its_source(tmp_path, files, spec, says):
    _write(tmp_path, files)
    why = static_reason(spec if ":" in spec else str(tmp_path / spec), str(tmp_path))
    assert why is not None and says in why and "\n" not in why, why


@pytest.mark.parametrize("files, spec", [
    ({"a.py": "import sys\nsys.path.insert(0, 'lib')\nimport only_in_lib\n"}, "a.py"),  # it moves sys.path first
    ({"a.py": "try:\n    import apex\nexcept ImportError:\n    apex = None\n"}, "a.py"),  # optional
    ({"a.py": "import helper\nimport only_after_helper\n", "helper.py": "import sys\nsys.path.append('x')\n"},
     "a.py"),  # its own module may move sys.path: nothing after it is certain
    ({"a.py": "from . import x\n"}, "a.py"),
    ({"layers/__init__.py": "import sys\nsys.path.append('v')\n", "layers/adapter.py": "import vendored\n"},
     "layers.adapter:Impl"),
    ({}, "missing.py"),  # no such file: the worker's own message says so
], ids=["sys-path", "try", "own-module", "relative", "package-init", "no-file"])
def test_nothing_uncertain_is_called_unimportable(tmp_path, files, spec):
    _write(tmp_path, files)
    assert static_reason(spec if ":" in spec else str(tmp_path / spec), str(tmp_path)) is None


def test_correct_submissions_are_not_called_unimportable():
    for name in ("simple_module_good.py", "grading/reference_copy.py", "grading/bug_bias_every_rank.py"):
        assert static_reason(os.path.join(FIXTURES, name), FIXTURES) is None, name
    assert static_reason("adapter:Impl", os.path.join(FIXTURES, "grading", "adapter_pkg")) is None


def test_a_submission_that_does_not_import_is_graded_in_seconds(tmp_path):
    """Measured on a loaded 2-core machine: 0.3-1.0 s (18-30 s before, when the verdict first
    imported torch and started a process group to find out)."""
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(os.path.join(FIXTURES, "simple_module_import_error.py"), subs)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tpconform", "grade", str(subs), "--out", str(tmp_path / "out"),
                        "--unsandboxed", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       check=False)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    sub = json.loads((tmp_path / "out" / "report.json").read_text())["submissions"][0]
    assert sub["total"] == 0 and "No module named 'this_module_does_not_exist'" in sub["why"], sub["why"]
    print(f"graded an unimportable submission in {sub['seconds']} s ({took:.1f} s with the grader's start)")
    assert sub["seconds"] < 10, sub["seconds"]
