"""The OS sandbox a submission is graded in: bubblewrap (``bwrap``) namespaces around its whole
verdict process tree.

:func:`command` wraps the verdict's command line so that it runs with

- fresh user, PID, mount, IPC, UTS, cgroup and network namespaces (``--unshare-all``; the network
  namespace has only its own loopback, which bwrap brings up: the Gloo groups use it), no nested
  user namespaces (``--disable-userns``), no capabilities, a new terminal session;
- a root file system that holds only: the Python environment (``/usr``, the interpreter's prefix,
  the virtual environment) read-only, the suite snapshot read-only, the submission's copy
  read-only, a private ``/tmp`` and ``/dev/shm`` (tmpfs, size-capped), a fresh ``/proc`` and a
  minimal ``/dev``. The root itself (bwrap's tmpfs, which has no size cap: ``/opt``, ``/etc``,
  ``/root`` would be host memory without a bound) and ``/dev`` (another tmpfs) are remounted
  read-only once everything is in place, so ``/tmp`` and ``/dev/shm`` are the only places to write. The checkout, the grader's ``--out``, the submissions folder and ``HOME`` are
  not there at all;
- every process it starts inside the PID namespace, which the kernel kills as a whole when its
  first process (bwrap's reaper) ends: ``--die-with-parent`` ends it with the grader, and the
  grader kills it when the submission is done or out of time.

Only two file descriptors cross: the write end of the result pipe and the log file.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

SUITE_MOUNT = "/opt/tpconform-suite"  # where the suite snapshot appears inside
SUBMISSION_MOUNT = "/submission"  # where the submission's copy appears inside (its working directory)
TMP_BYTES = 512 * 2**20  # /tmp and /dev/shm inside: enough for Gloo and stack files, not a disk filler


def executable() -> str | None:
    return shutil.which("bwrap")


def _python_roots() -> list[str]:
    """The directories the interpreter and its packages live in (deduplicated, outermost first)."""
    roots = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable))):
        p = os.path.realpath(p)
        if p.startswith("/usr/") or p == "/usr":
            continue  # /usr is bound whole
        if p not in roots:
            roots.append(p)
    roots.sort(key=len)
    kept: list[str] = []
    for p in roots:
        if not any(p == k or p.startswith(k + "/") for k in kept):
            kept.append(p)
    return kept


def command(inner: list[str], *, suite_dir: str, submission_dir: str, cwd: str, env: dict,
            keep_fds: tuple[int, ...] = ()) -> list[str]:
    """``inner`` wrapped in bwrap (paths in ``inner``, ``cwd`` and ``env`` are as seen inside)."""
    exe = executable()
    if exe is None:
        raise RuntimeError("bwrap is not installed")
    argv = [exe, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--as-pid-1", "--cap-drop", "ALL",
            "--clearenv", "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "lib32", "sbin"):
        target = os.path.join("/", link)
        if os.path.islink(target):
            argv += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            argv += ["--ro-bind", target, target]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf"):
        argv += ["--ro-bind-try", f, f]
    argv += ["--file", "0", "/etc/passwd", "--file", "0", "/etc/group", "--file", "0", "/etc/hosts"]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--size", str(TMP_BYTES), "--tmpfs", "/dev/shm"]
    # after the tmpfs mounts: an environment that lives under /tmp (a CI checkout's venv) stays visible
    for root in _python_roots():
        argv += ["--ro-bind", root, root]
    argv += ["--ro-bind", suite_dir, SUITE_MOUNT, "--ro-bind", submission_dir, SUBMISSION_MOUNT]
    # last: bwrap's root and /dev are tmpfs without a size cap; read-only, nothing can fill them (the
    # size-capped /tmp and /dev/shm are mounts of their own and stay writable)
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", cwd]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    return argv + ["--", *inner]


# what the /etc files given by --file hold: fd 0 is replaced per call below
_ETC = {"/etc/passwd": b"grader:x:0:0::/tmp:/usr/sbin/nologin\n", "/etc/group": b"grader:x:0:\n",
        "/etc/hosts": b"127.0.0.1 localhost\n"}


def popen(argv: list[str], **kw) -> subprocess.Popen:
    """Start ``argv`` from :func:`command`, feeding the ``--file`` contents through pipes."""
    fds, pass_fds = [], list(kw.pop("pass_fds", ()))
    argv = list(argv)
    try:
        for i, a in enumerate(argv):
            if a == "--file" and argv[i + 2] in _ETC:
                r, w = os.pipe()
                os.write(w, _ETC[argv[i + 2]])
                os.close(w)
                fds.append(r)
                pass_fds.append(r)
                argv[i + 1] = str(r)
            if a == "--":
                break
        return subprocess.Popen(argv, pass_fds=tuple(pass_fds), **kw)
    finally:
        for r in fds:
            os.close(r)


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why no sandbox can be made here (``None``: bwrap works)."""
    if executable() is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    probe = [sys.executable, "-I", "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print('ok')"]
    argv = command(probe, suite_dir="/usr", submission_dir="/usr", cwd="/tmp", env={"PATH": "/usr/bin:/bin"})
    try:
        proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        out, err = proc.communicate(timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not start here: {exc}"
    if proc.returncode != 0 or b"ok" not in out:
        return f"bwrap does not start here: {err.decode('utf-8', 'replace').strip()[-300:]}"
    return None


def version() -> str:
    try:
        out = subprocess.run([executable() or "bwrap", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "bwrap"
    return out.strip() or "bwrap"
