"""The memory watch leaves a library's extension build out of a worker's count (a compiler working in a
torch-extensions build folder), and still counts the same process anywhere else."""

import os
import subprocess
import sys
import time

from tpconform.transport.memory_watch import tree_resident_bytes

HOLD = "x = bytearray(300 * 2**20); import time; time.sleep(60)"  # 300 MiB, resident


def _fake_compiler(tmp_path, cwd):
    tool = tmp_path / "cc1plus"  # the kernel names the process after the path it executes
    tool.symlink_to(sys.executable)
    p = subprocess.Popen([str(tool), "-c", HOLD], cwd=cwd)
    time.sleep(1.5)
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
