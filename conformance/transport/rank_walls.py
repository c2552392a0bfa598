"""Walls between the ranks of one submission, kept by the kernel, raised by each worker before any
candidate code runs (grading in the sandbox only: ``really_tensor_parallel`` counts the loopback's bytes,
so every other way from one rank to another must be shut).

The ranks run as one user, in one sandbox (one mount, IPC and network namespace), started from one
forkserver, and the candidate controls every one of them: whatever a rank sets on itself, its own code
can undo, so a wall must be one the kernel keeps even against the process that raised it.

- **Landlock** (``landlock_restrict_self``, unprivileged, irreversible, inherited by every child): each
  rank is its own domain. Files: read-only on the system's paths, read-write on devices other than
  ``/dev/shm``, and all rights on one private folder (its ``TMPDIR``); nothing else of ``/tmp`` or
  ``/dev/shm`` can be opened, made, or removed, so no file a rank writes can be read by another rank.
  Processes: a Landlock domain can ptrace only processes of its own domain or below it, so no rank can
  read or write another's memory (``/proc/PID/mem``, ``process_vm_readv``), open its descriptors
  (``/proc/PID/fd``, ``pidfd_getfd``) or its root, whatever its dumpable flag (which the rank itself could
  set back). From Landlock ABI 6 also scoped: abstract Unix sockets and signals (``sigqueue`` carries a
  value) of processes outside the domain.
- **seccomp** (a filter after ``PR_SET_NO_NEW_PRIVS``; irreversible, inherited): ``socket`` only for
  ``AF_INET``/``AF_INET6`` (whose traffic between ranks crosses the counted ``lo``) and route netlink;
  no ``socketpair``; no SysV shared memory, semaphores or message queues, no POSIX message queues (the
  sandbox's IPC namespace is shared by the ranks), no key rings, no ``io_uring`` (it makes sockets
  without the ``socket`` call), no ``ptrace``/``process_vm_*``/``pidfd_getfd``, no extended attributes
  set, no ``chmod`` (which would unlock the rank's folder). Another architecture's calls (x32, i386
  through ``int 0x80``) are refused.
- **a locked folder**: Landlock does not mediate metadata (``stat``: a file's size and times, which its
  owner sets at will; ``getxattr``), so a rank's own files live below a folder of mode 0, which no
  process without capabilities can look a name up in (the rank reaches its files through a descriptor
  it opened before, ``/proc/self/fd/N``; the verdict through its own): no other rank can name them.
- ``/proc``: a rank reads what is not a process, and its own process; not another rank's command line
  (which its owner can rewrite in its memory: a channel of a few hundred bytes a read).

What remains (documented in ``docs/GRADING.md``): the shared file systems' totals (``statvfs`` of
``/tmp``: free blocks and inodes, which a rank moves by writing its own files), the machine's counters
(``/proc/meminfo``, load), CPU timing: covert channels of, by estimate, kilobytes a second; and the
loopback (counted).
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
import struct
import sys
import tempfile
from typing import Optional

# Landlock (linux/landlock.h)
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS = {"execute": 1 << 0, "write_file": 1 << 1, "read_file": 1 << 2, "read_dir": 1 << 3,
       "remove_dir": 1 << 4, "remove_file": 1 << 5, "make_char": 1 << 6, "make_dir": 1 << 7,
       "make_reg": 1 << 8, "make_sock": 1 << 9, "make_fifo": 1 << 10, "make_block": 1 << 11,
       "make_sym": 1 << 12, "refer": 1 << 13, "truncate": 1 << 14}
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_FILE_RIGHTS = ("execute", "write_file", "read_file", "truncate")  # what a rule on a file may grant

# seccomp
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | 1
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_AF_INET, _AF_INET6, _AF_NETLINK, _NETLINK_ROUTE = 2, 10, 16, 0
# (audit arch, {call: number}) per machine; the calls refused outright, then socket (checked by family)
_ARCHES = {
    "x86_64": (0xC000003E, {"socket": 41, "socketpair": 53, "shmget": 29, "shmat": 30, "semget": 64,
                            "msgget": 68, "mq_open": 240, "ptrace": 101, "process_vm_readv": 310,
                            "process_vm_writev": 311, "add_key": 248, "request_key": 249, "keyctl": 250,
                            "io_uring_setup": 425, "pidfd_getfd": 438, "setxattr": 188, "lsetxattr": 189,
                            "fsetxattr": 190, "setxattrat": 463, "chmod": 90, "fchmod": 91,
                            "fchmodat": 268, "fchmodat2": 452}),
    "aarch64": (0xC00000B7, {"socket": 198, "socketpair": 199, "shmget": 194, "shmat": 196, "semget": 190,
                             "msgget": 186, "mq_open": 180, "ptrace": 117, "process_vm_readv": 270,
                             "process_vm_writev": 271, "add_key": 217, "request_key": 218, "keyctl": 219,
                             "io_uring_setup": 425, "pidfd_getfd": 438, "setxattr": 5, "lsetxattr": 6,
                             "fsetxattr": 7, "setxattrat": 463, "fchmod": 52, "fchmodat": 53,
                             "fchmodat2": 452}),
}
_X32_BIT = 0x40000000

try:
    _libc: Optional[ctypes.CDLL] = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


class WallError(RuntimeError):
    """The walls could not be raised: the rank must not run candidate code."""


def _syscall(*args) -> int:
    assert _libc is not None
    _libc.syscall.restype = ctypes.c_long
    return int(_libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args]))


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none, or disabled)."""
    if _libc is None or not sys.platform.startswith("linux"):
        return 0
    got = _syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(got, 0)


def unavailable() -> Optional[str]:
    """Why the walls cannot be raised here (``None``: they can)."""
    if not sys.platform.startswith("linux") or _libc is None:
        return "not Linux"
    if platform.machine() not in _ARCHES:
        return f"no seccomp filter for the {platform.machine()} architecture"
    if landlock_abi() < 1:
        return "the kernel has no Landlock (Linux 5.13 or later, with landlock among its security modules)"
    return None


def _fs_rights(abi: int) -> int:
    names = [n for n in _FS if not (n == "refer" and abi < 2) and not (n == "truncate" and abi < 3)]
    return sum(_FS[n] for n in names)


def _allow(ruleset: int, path: str, rights: int) -> None:
    """A rule: ``rights`` beneath ``path`` (a file gets only what applies to files). Missing: skipped."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            return  # a pipe or socket (/dev/stderr of a test): not a file system's object
        if not stat.S_ISDIR(mode):
            rights &= sum(_FS[n] for n in _FILE_RIGHTS)
        if not rights:
            return
        attr = struct.pack("=Qi", rights, fd)  # struct landlock_path_beneath_attr (packed)
        buf = ctypes.create_string_buffer(attr, len(attr))
        if _syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, buf, 0) != 0:
            raise WallError(f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def _readable_roots(private_dir: str) -> list[str]:
    """What a rank may read: every top-level entry but ``/tmp``, ``/dev`` and ``/proc``; of ``/proc``,
    what is not a process, and its own process; the Python environment wherever it lives (a CI
    checkout's may be under ``/tmp``)."""
    roots = [os.path.join("/", e) for e in sorted(os.listdir("/")) if e not in ("tmp", "dev", "proc")]
    roots += [os.path.join("/proc", e) for e in sorted(os.listdir("/proc")) if not e.isdigit()]
    roots.append(f"/proc/{os.getpid()}")
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
              *[p for p in sys.path if p and os.path.isabs(p)]):
        p = os.path.realpath(p)
        if (p == "/tmp" or p.startswith("/tmp/")) and not p.startswith(private_dir):
            roots.append(p)
    return roots


def _landlock(private_dir: str) -> None:
    abi = landlock_abi()
    everything = _fs_rights(abi)
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    # struct landlock_ruleset_attr: handled_access_fs, handled_access_net (ABI 4), scoped (ABI 6)
    attr = struct.pack("=QQQ", everything, 0, scoped) if abi >= 6 else struct.pack("=Q", everything)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall(_SYS_CREATE_RULESET, buf, len(attr), 0)
    if ruleset < 0:
        raise WallError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        read = _FS["execute"] | _FS["read_file"] | _FS["read_dir"]
        for root in _readable_roots(private_dir):
            _allow(ruleset, root, read)
        device = read | _FS["write_file"] | (_FS["truncate"] if abi >= 3 else 0)
        for entry in sorted(os.listdir("/dev")):
            if entry not in ("shm", "mqueue"):
                _allow(ruleset, os.path.join("/dev", entry), device)
        _allow(ruleset, private_dir, everything)
        if _syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise WallError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)


def _filter(arch: int, calls: dict[str, int]) -> list[tuple[int, int, int, int]]:
    """The seccomp program: (code, jt, jf, k) per instruction."""
    refused = [n for name, n in calls.items() if name != "socket"]
    prog = [(_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
            (_JEQ_K, 1, 0, arch),
            (_RET_K, 0, 0, _RET_EPERM),  # another architecture's calling convention
            (_LD_W_ABS, 0, 0, 0)]  # seccomp_data.nr
    if arch == _ARCHES["x86_64"][0]:
        prog += [(_JGE_K, 0, 1, _X32_BIT), (_RET_K, 0, 0, _RET_EPERM)]
    for n in refused:
        prog += [(_JEQ_K, 0, 1, n), (_RET_K, 0, 0, _RET_EPERM)]
    prog += [(_JEQ_K, 1, 0, calls["socket"]), (_RET_K, 0, 0, _RET_ALLOW),
             (_LD_W_ABS, 0, 0, 16),  # args[0] (low half): the family
             (_JEQ_K, 0, 1, _AF_INET), (_RET_K, 0, 0, _RET_ALLOW),
             (_JEQ_K, 0, 1, _AF_INET6), (_RET_K, 0, 0, _RET_ALLOW),
             (_JEQ_K, 0, 3, _AF_NETLINK),
             (_LD_W_ABS, 0, 0, 32),  # args[2] (low half): the netlink protocol
             (_JEQ_K, 0, 1, _NETLINK_ROUTE), (_RET_K, 0, 0, _RET_ALLOW),
             (_RET_K, 0, 0, _RET_EPERM)]
    return prog


def _seccomp() -> None:
    arch, calls = _ARCHES[platform.machine()]
    prog = _filter(arch, calls)
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    filt = ctypes.create_string_buffer(raw, len(raw))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _Prog(len(prog), ctypes.addressof(filt))
    assert _libc is not None
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise WallError(f"seccomp: {os.strerror(ctypes.get_errno())}")


EXTENSIONS = "torch_extensions"


def extension_folder(files: str) -> str:
    """Where a walled rank whose own files are in ``files`` builds torch extensions (its
    ``TORCH_EXTENSIONS_DIR``), as the verdict sees it (``tpconform.transport.stale_locks``)."""
    return os.path.join(files, "tmp", EXTENSIONS)


def locked_layout(lock_dir: str) -> str:
    """Make a rank's folders: ``lock_dir`` (which :func:`raise_walls` locks) and, inside it, the folder
    of the rank's own files (returned; the harness puts the rank's stack files there)."""
    files = os.path.join(lock_dir, "files")
    os.makedirs(files, mode=0o700, exist_ok=True)
    return files


def raise_walls(lock_dir: str) -> None:
    """Wall this process (and everything it starts) off from every other rank: its own files only in
    ``lock_dir/files`` (:func:`locked_layout`), its ``TMPDIR`` (and ``HOME``) in there, reached through a
    descriptor; ``lock_dir`` then locked (mode 0: no process without capabilities, this one included,
    can look a name up in it, so no other rank can even ``stat`` what lies below); Landlock; seccomp
    (which also forbids ``chmod`` from then on). Irreversible; raises :class:`WallError` (the rank must
    then not run candidate code) when any of it fails."""
    why = unavailable()
    if why:
        raise WallError(why)
    # Landlock binds the calling thread only (and the threads it starts later): a thread started before
    # (a backend's pool, whose future callbacks run candidate code) would be outside every wall
    threads = os.listdir(f"/proc/{os.getpid()}/task")
    if len(threads) != 1:
        raise WallError(f"raised with {len(threads)} threads running: only the first would be walled")
    lock_dir = os.path.realpath(lock_dir)
    files = locked_layout(lock_dir)
    private_dir = os.path.join(files, "tmp")
    os.makedirs(private_dir, mode=0o700, exist_ok=True)
    held = os.open(files, os.O_PATH | os.O_DIRECTORY)
    os.set_inheritable(held, True)  # its children reach their TMPDIR the same way
    # temporary files, a library's caches and builds (named, so that no library takes the real path,
    # which crosses the locked folder)
    for name in ("TMPDIR", "HOME", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        os.environ[name] = f"/proc/self/fd/{held}/tmp"
    # where the verdict's memory watch knows a build by its folder (extension_folder)
    os.environ["TORCH_EXTENSIONS_DIR"] = f"/proc/self/fd/{held}/tmp/{EXTENSIONS}"
    tempfile.tempdir = None
    assert _libc is not None
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise WallError(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    _landlock(private_dir)
    os.chmod(lock_dir, 0)
    _seccomp()
