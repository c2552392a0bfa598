"""The memory watch leaves a library's extension build out of a worker's count (a compiler working in a
torch-extensions build folder), and still counts the same process anywhere else."""

import os
import select
import subprocess
import sys

from tpconform.transport.memory_watch import tree_resident_bytes

# 300 MiB, resident (bytearray fills it), then "ready" once it is: a loaded machine may take seconds to fill it
HOLD = "x = bytearray(300 * 2**20); print('ready', flush=True); import time; time.sleep(60)"


def _fake_compiler(tmp_path, cwd):
    tool = tmp_path / "cc1plus"  # the kernel names the process after the path it executes
    tool.symlink_to(sys.executable)
    p = subprocess.Popen([str(tool), "-c", HOLD], cwd=cwd, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([p.stdout], [], [], 60)
    assert ready and p.stdout.readline().strip() == "ready", "the fake compiler did not fill its memory in 60 s"
    return p


def test_a_compiler_in_an_extension_build_folder_is_not_counted(tmp_path, monkeypatch):
    build = tmp_path / "extensions" / "some_op"
    build.mkdir(parents=True)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    p = _fake_compiler(tmp_path, build)
    try:
        assert tree_resident_bytes(p.pid) == 0
    finally:
        p.kill()


def test_the_same_process_elsewhere_is_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    p = _fake_compiler(tmp_path, os.fspath(tmp_path))
    try:
        assert tree_resident_bytes(p.pid) > 250 * 2**20
    finally:
        p.kill()
