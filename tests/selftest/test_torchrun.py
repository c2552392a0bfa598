"""torchrun mode (``torchrun ... -m tpconform torchrun --impl=SPEC``): real launches on this machine.

- the reference passes (standalone, 2 ranks) and torchrun exits 0;
- a seeded bug fails: non-zero exit, the report names the property;
- two torchrun launches as two "nodes" (c10d rendezvous on localhost) run the suite across them;
- a rank that hangs fails its example within ``--tp-timeout``, with every rank's stack; the rest of
  the run is skipped with the reason, and no process of the launch is left behind;
- bad input (no torchrun environment, no ``--impl``) is one line and exit code 4.

Each launch pays torch's import in ~5 processes (~10 s on 2 cores), so each runs one test file
narrowed with ``-k``, and all of them start together.
"""

import os
import random
import socket
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORWARD = "tests/properties/test_forward.py"
LAUNCH_LIMIT_S = 120.0
TAG = "TPCONFORM_TORCHRUN_TEST"


def _env(tag: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env[TAG] = tag  # inherited by every process of the launch: how the test finds them afterwards
    return env


def _tagged(tag: str) -> list[int]:
    """Live processes started by the launch tagged ``tag`` (read from their environment)."""
    needle = f"{TAG}={tag}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue
        except OSError:
            continue
        pids.append(int(name))
    return pids


def _leftovers(tag: str, wait_s: float = 5.0) -> list[int]:
    """What is still alive ``wait_s`` after the launch ended; killed, so a failing test leaves nothing."""
    deadline = time.monotonic() + wait_s
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _tagged(tag)
    for pid in left:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    return left


class Launch:
    """``torchrun ARGS`` started now, in the background; :meth:`result` waits (bounded) and checks
    that no process of it is left."""

    def __init__(self, *args: str):
        self.tag = uuid.uuid4().hex
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args], cwd=ROOT,
                                     env=_env(self.tag), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._result = None

    def result(self) -> tuple[int, str, float]:
        """``(exit code, output, seconds)``."""
        if self._result is None:
            try:
                out, _ = self.proc.communicate(timeout=max(1.0, LAUNCH_LIMIT_S - (time.monotonic() - self.started)))
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.communicate()
                left = _leftovers(self.tag)
            assert not left, f"processes left behind by the launch: {left}"
            self._result = (self.proc.returncode, out, time.monotonic() - self.started)
        return self._result


def _suite(impl: str, *pytest_args: str) -> list[str]:
    return ["-m", "tpconform", "torchrun", f"--impl={impl}", *pytest_args, "--", FORWARD]


def _free_port() -> int:
    """A free port below the ephemeral range: the other launches, starting at the same time, bind
    ephemeral ports (their stores, Gloo's connections) and could take a just-released one."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launches():
    """Every launch of this module, started at once: most of a launch is processes importing torch
    and waiting on each other, so side by side they take ~35 s on 2 cores instead of ~50 s in a row."""
    port = _free_port()
    node = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
            f"--rdzv-id={uuid.uuid4().hex[:8]}",
            *_suite("reference", "--tp-timeout=30", "-k", "output_matches and column-gathered")]
    started = {
        "reference": Launch("--standalone", "--nproc-per-node=2",
                            *_suite("reference", "--tp-timeout=30", "-k", "output_matches")),
        "bug": Launch("--standalone", "--nproc-per-node=2",
                      *_suite("bug-row-bias-every-rank", "--tp-timeout=30", "-k", "output_matches and row-full-input")),
        "node0": Launch("--node-rank=0", *node),
        "node1": Launch("--node-rank=1", *node),
        "hang": Launch("--standalone", "--nproc-per-node=2",
                       *_suite("tests.selftest.fixtures.hostile.hangs:SleepsOnRank1", "--tp-timeout=3", "-rs",
                               "-k", "output_matches")),
    }
    yield started
    for launch in started.values():  # a failed test must not leave its launch behind
        try:
            launch.result()
        except Exception:
            pass


def test_reference_passes_on_a_standalone_launch(launches):
    rc, out, _ = launches["reference"].result()
    assert rc == 0, out
    assert "world sizes [2]" in out and "(torchrun, 2 ranks)" in out, out
    assert "4 passed" in out, out


def test_a_seeded_bug_fails_and_the_report_names_the_property(launches):
    rc, out, _ = launches["bug"].result()
    assert rc != 0, out
    assert "property violated: output matches the dense layer" in out, out
    assert "FAILED tests/properties/test_forward.py::test_output_matches_the_dense_layer[row-full-input]" in out, out
    assert "likely cause: the output is off by 1× the bias" in out, out


def test_two_nodes_with_c10d_rendezvous(launches):
    """Two torchrun launches, one process each, meeting at a c10d rendezvous on localhost: what two
    machines do (each node's process relays its worker through the store that one agent hosts)."""
    results = [launches["node0"].result(), launches["node1"].result()]
    outs = "\n".join(out for _, out, _ in results)
    assert [rc for rc, _, _ in results] == [0, 0], outs
    assert outs.count("1 passed") == 1 and "(torchrun, 2 ranks)" in outs, outs  # one verdict, on global rank 0


def test_a_hanging_rank_fails_with_every_stack_and_ends_the_run(launches):
    rc, out, seconds = launches["hang"].result()
    assert rc != 0, out
    assert "rank(s) [0, 1] did not reply" in out, out
    assert "--- rank 0 stack:" in out and "--- rank 1 stack:" in out, out
    assert "hangs.py" in out and "in all_gather" in out, out  # rank 1 sleeps, rank 0 waits in the gather
    assert "the ranks cannot be restarted" in out, out
    assert "1 failed, 3 skipped" in out and "the torchrun group was lost" in out, out
    assert seconds < 90, f"{seconds:.0f} s"


@pytest.mark.parametrize("env, args, message", [
    ({}, ["--impl=reference"], "start it with torchrun"),
    ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
     ["-k", "x"], "name the implementation to check with --impl"),
], ids=["outside-torchrun", "no-impl"])
def test_bad_input_is_one_line_and_exit_code_4(env, args, message):
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    proc = subprocess.run([sys.executable, "-m", "tpconform", "torchrun", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""
