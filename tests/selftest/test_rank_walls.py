"""The walls between ranks (``tpconform.transport.rank_walls``), channel by channel, without a grading run.

Two sibling processes stand for two ranks of one submission (one user, one /tmp and /dev/shm, one IPC
and network namespace). The first walls itself and publishes a file, a FIFO, a buffer's address, a
socket; the second, walled too, tries every way to reach them. An unwalled process (the verdict's side)
still can, so the probe is not vacuous; a walled rank keeps what a correct layer needs (TCP on the
loopback, its own temporary files, /dev/null, reading the Python environment). The grading run with a
hostile fixture per channel is ``test_parallelism_grading.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tpconform.transport import rank_walls

PROBE = r'''
import ctypes, json, mmap, os, socket, sys, tempfile, time
from tpconform.transport import rank_walls

shared = sys.argv[1]  # a folder of the shared /tmp
libc = ctypes.CDLL(None, use_errno=True)
secret = b"weights!" * 4096
buf = ctypes.create_string_buffer(secret, len(secret))

def drop_capabilities():  # what a process in the sandbox has: none (here the test may run as root)
    header, data = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return type(exc).__name__ + ":" + os.strerror(exc.errno or 0)

r, w = os.pipe()
first = os.fork()
if first == 0:  # rank 0: walled, publishes everything, then waits
    os.close(r)
    drop_capabilities()
    rank_walls.locked_layout(os.path.join(shared, "rank0"))
    rank_walls.raise_walls(os.path.join(shared, "rank0"))
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE 1: what a candidate would do for its peer
    mine = tempfile.mkdtemp()  # /proc/self/fd/N/tmp/...: its real path crosses the locked folder
    real = os.path.join(shared, "rank0", "files", "tmp", os.path.basename(mine))
    with open(os.path.join(mine, "w.bin"), "wb") as f:
        f.write(secret)
    os.mkfifo(os.path.join(mine, "fifo"))
    lst = socket.socket(socket.AF_INET); lst.bind(("127.0.0.1", 0)); lst.listen(1)
    held = os.open(os.path.join(mine, "w.bin"), os.O_RDONLY)  # a descriptor another rank might open
    out = {"pid": os.getpid(), "addr": ctypes.addressof(buf), "file": os.path.join(real, "w.bin"), "fd": held,
           "fifo": os.path.join(real, "fifo"),
           "port": lst.getsockname()[1],
           "shared_tmp": attempt(lambda: open(os.path.join(shared, "x"), "wb").write(secret)),
           "dev_shm": attempt(lambda: open("/dev/shm/tpconform-walls-probe", "wb").write(secret)),
           "abstract_unix": attempt(lambda: socket.socket(socket.AF_UNIX).bind("\0tpconform-walls")),
           "socketpair": attempt(lambda: socket.socketpair()),
           "sysv_shm": "ok" if libc.shmget(0, 4096, 0o1600) >= 0 else "EPERM",
           "unlock": attempt(lambda: os.chmod(os.path.join(shared, "rank0"), 0o700)),
           "xattr": attempt(lambda: os.setxattr(os.path.join(mine, "w.bin"), "user.w", secret[:4096])),
           "dev_null": attempt(lambda: open("/dev/null", "w").write("x")),
           "stdlib": attempt(lambda: __import__("json.tool"))}
    os.write(w, json.dumps(out).encode() + b"\n")
    c, _ = lst.accept(); c.sendall(b"tcp"); c.close()
    time.sleep(30)
    os._exit(0)
os.close(w)
published = json.loads(os.fdopen(r).readline())

def mem_read():
    with open(f"/proc/{published['pid']}/mem", "rb", buffering=0) as f:
        f.seek(published["addr"])
        if f.read(8) != b"weights!":
            raise OSError(0, "wrong bytes")

def vm_read():
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    dst = ctypes.create_string_buffer(8)
    local, remote = iovec(ctypes.addressof(dst), 8), iovec(published["addr"], 8)
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    if libc.process_vm_readv(published["pid"], ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != 8:
        raise OSError(ctypes.get_errno(), "")

def tcp():
    with socket.create_connection(("127.0.0.1", published["port"])) as c:
        assert c.recv(3) == b"tcp"

def probes():
    return {"file": attempt(lambda: open(published["file"], "rb").read()),
            "proc_mem": attempt(mem_read), "process_vm_readv": attempt(vm_read),
            "proc_fd": attempt(lambda: open(f"/proc/{published['pid']}/fd/{published['fd']}", "rb").read()),
            "signal": attempt(lambda: os.kill(published["pid"], 0)),
            "stat": attempt(lambda: os.stat(published["file"])),
            "fifo": attempt(lambda: os.close(os.open(published["fifo"], os.O_RDONLY | os.O_NONBLOCK))),
            "cmdline": attempt(lambda: open(f"/proc/{published['pid']}/cmdline", "rb").read())}

unwalled = probes()
second = os.fork()
if second == 0:  # rank 1: walled, tries to reach rank 0
    drop_capabilities()
    rank_walls.raise_walls(os.path.join(shared, "rank1"))
    got = probes()
    got["tcp"] = attempt(tcp)
    got["own_tmp"] = attempt(lambda: tempfile.NamedTemporaryFile().write(b"x"))
    got["own_proc"] = attempt(lambda: open("/proc/self/status").read())
    got["abstract_unix_connect"] = attempt(lambda: socket.socket(socket.AF_UNIX).connect("\0tpconform-walls"))
    print(json.dumps({"rank0": published, "unwalled": unwalled, "rank1": got}), flush=True)
    os._exit(0)
os.waitpid(second, 0)
os.kill(first, 9)
'''


@pytest.mark.skipif(rank_walls.unavailable() is not None, reason=f"no walls here: {rank_walls.unavailable()}")
def test_a_walled_rank_cannot_reach_another_ranks_files_sockets_or_memory(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        r = subprocess.run([sys.executable, "-c", PROBE, str(shared)], capture_output=True, text=True, timeout=120,
                           check=False)
        locked = [os.stat(shared / d).st_mode & 0o777 for d in sorted(os.listdir(shared))]
    finally:
        for d in os.listdir(shared):
            os.chmod(shared / d, 0o700)  # what the harness does before it removes a group's folder
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    rank0, unwalled, rank1 = got["rank0"], got["unwalled"], got["rank1"]
    # the unwalled process (where the verdict stands) reaches all of it: the probes are real
    assert set(unwalled.values()) == {"ok"}, unwalled
    # what a correct layer needs still works
    assert rank0["dev_null"] == rank0["stdlib"] == rank1["tcp"] == rank1["own_tmp"] == rank1["own_proc"] == "ok", got
    # rank 0 can leave nothing in a shared place
    for channel in ("shared_tmp", "dev_shm", "abstract_unix", "socketpair", "sysv_shm", "xattr", "unlock"):
        assert rank0[channel] != "ok", (channel, rank0[channel])
    # rank 1 reaches nothing of rank 0's
    for channel in ("file", "stat", "fifo", "cmdline", "proc_mem", "process_vm_readv", "proc_fd",
                    "abstract_unix_connect"):
        assert rank1[channel] != "ok", (channel, rank1[channel])
    if rank_walls.landlock_abi() >= 6:
        assert rank1["signal"] != "ok"
    assert sorted(os.listdir(shared)) == ["rank0", "rank1"] and locked == [0, 0]  # nothing else landed there


def test_the_filter_refuses_foreign_calling_conventions():
    """Another architecture's calls would dodge the numbers the filter checks: they are refused first."""
    arch, calls = rank_walls._ARCHES["x86_64"]
    prog = rank_walls._filter(arch, calls)
    assert prog[0] == (rank_walls._LD_W_ABS, 0, 0, 4) and prog[1][3] == arch and prog[2][3] == rank_walls._RET_EPERM
    assert (rank_walls._JGE_K, 0, 1, rank_walls._X32_BIT) in prog
