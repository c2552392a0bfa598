"""The grading verdict's forkserver is a fork of the verdict (``transport.forkserver.start_forked``: torch
imported once per sandbox): it must keep none of the verdict's descriptors (the result pipe above all,
which its workers, running candidate code, would otherwise inherit), and a process with a second thread
must never fork one (it falls back to a spawned forkserver). Each case runs in a fresh interpreter that
imports no torch and kills its forkserver at once: about a second each."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HOLDS = """
import os, signal, sys, time
from tpconform.transport import forkserver
r, w = os.pipe()  # stands for the verdict's result pipe
pipe = os.fstat(w).st_ino
forked = forkserver.start_forked()
pid = forkserver.forkserver._forkserver._forkserver_pid
deadline = time.monotonic() + 20
held = True
while held and time.monotonic() < deadline:
    held = False
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held = held or os.stat(f"/proc/{pid}/fd/{fd}").st_ino == pipe
        except OSError:
            pass
    time.sleep(0.02)
os.kill(pid, signal.SIGKILL)
print(forked, held)
"""

THREADED = """
import os, signal, threading
from tpconform.transport import forkserver
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
forked = forkserver.start_forked()
os.kill(forkserver.forkserver._forkserver._forkserver_pid, signal.SIGKILL)
stop.set()
print(forked)
"""


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_a_forked_forkserver_keeps_none_of_the_verdicts_descriptors():
    assert _run(HOLDS) == "True False"  # forked, and the pipe's write end is not held there


def test_a_process_with_a_second_thread_spawns_its_forkserver_instead():
    assert _run(THREADED) == "False"
