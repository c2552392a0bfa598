"""The grader's whole-sandbox memory watch (``memory_watch.SandboxWatch``), without a sandbox: it sums every
process below its root, kills the whole tree over its bound and says why in one line; a process whose main
thread has exited (its ``/proc/PID/status`` shows no memory) is still counted."""

import subprocess
import sys
import time

from tpconform.transport import proctree
from tpconform.transport.memory_watch import SandboxWatch, resident_bytes

# a parent that starts a child holding 300 MiB, resident, and waits
PARENT = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
          "'x = b\"h\" * (300 << 20); import time; time.sleep(60)']); time.sleep(60)")
# the main thread exits (pthread_exit); another thread holds 200 MiB
ZOMBIE_LEADER = ("import ctypes, threading, time\n"
                 "def hold():\n    x = b'z' * (200 << 20); time.sleep(60)\n"
                 "threading.Thread(target=hold).start(); time.sleep(1.0); ctypes.CDLL(None).pthread_exit(None)")


def _wait_for(pred, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_the_whole_tree_is_killed_over_the_bound_and_the_reason_is_one_line():
    p = subprocess.Popen([sys.executable, "-c", PARENT])
    watch = SandboxWatch(p.pid, 200 * 2**20)
    try:
        assert _wait_for(lambda: watch.breach is not None)
        assert p.wait(timeout=10) is not None
        assert watch.breach.startswith("killed: its sandbox held") and "\n" not in watch.breach, watch.breach
        assert "--sandbox-memory-mb" in watch.breach and watch.peak > 200 * 2**20
    finally:
        watch.stop()
        proctree.kill_tree([p.pid])
        p.wait(timeout=10)


def test_a_tree_under_the_bound_is_left_alone():
    p = subprocess.Popen([sys.executable, "-c", PARENT])
    watch = SandboxWatch(p.pid, 2048 * 2**20)
    try:
        assert _wait_for(lambda: watch.peak > 250 * 2**20)
        time.sleep(0.3)
        assert watch.breach is None and p.poll() is None
    finally:
        watch.stop()
        proctree.kill_tree([p.pid])
        p.wait(timeout=10)


def test_a_process_whose_main_thread_exited_is_still_counted():
    p = subprocess.Popen([sys.executable, "-c", ZOMBIE_LEADER])
    try:
        assert _wait_for(lambda: resident_bytes(p.pid) > 150 * 2**20)
        time.sleep(1.5)  # the main thread is gone by now
        assert resident_bytes(p.pid) > 150 * 2**20
    finally:
        p.kill()
        p.wait(timeout=10)
