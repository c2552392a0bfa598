"""``python -m tpconform report-deviation ID``: a known deviation as a self-contained upstream bug report.

A deviation in ``impls/peers/known_deviations.toml`` (or a file given with ``--known-failures``)
names its reproduction with ``repro = "MODULE"``: ``impls/peers/repros/MODULE.py``, whose
``check(rank, world_size)`` returns the lines that show the deviation on a rank (see
``tpconform.impls.peers.repros``). The report prints:

- the library, torch and Python versions (from the installed distributions' metadata: nothing is
  imported here);
- what the deviation is (its ``reason``) and where it was reported upstream;
- the minimal standalone script: the repro module followed by :data:`HARNESS`, which runs
  ``check`` on every rank of a Gloo group of ``WORLD_SIZE`` processes on this machine and prints
  each rank's "expected …, got …" lines; it exits 1 when the deviation shows, 0 when it does not;
- unless ``--no-run``, what that script printed here (the script runs in its own process; the
  library is never imported into this one).

``--list`` lists the deviations and which have a script.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from typing import Optional

import tpconform.impls.peers.repros
from tpconform.engine.known_failures import Entry, KnownFailures
from tpconform.impls.peers import BY_NAME, KNOWN_DEVIATIONS

REPROS = os.path.dirname(os.path.abspath(tpconform.impls.peers.repros.__file__))
DEVIATION_SHOWN = 1  # the script's exit code when it reproduced the deviation
_VERDICTS = ("DEVIATION SHOWN", "not reproduced")  # the harness's last line

HARNESS = '''

# ---- harness: run check() on every rank of a Gloo group of WORLD_SIZE processes on this machine ----
def _rank(rank, world_size, init_file, results):
    import datetime
    import os

    import torch
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        lines = check(rank, world_size)
    except Exception as exc:  # a deviation may be an exception: report it as this rank's result
        lines = [f"raised {type(exc).__name__}: {exc}"]
    results.put((rank, list(lines)))
    dist.destroy_process_group()


if __name__ == "__main__":
    import multiprocessing
    import os
    import sys
    import tempfile

    ctx = multiprocessing.get_context("spawn")
    results = ctx.SimpleQueue()
    init_file = os.path.join(tempfile.mkdtemp(), "rendezvous")
    procs = [ctx.Process(target=_rank, args=(r, WORLD_SIZE, init_file, results)) for r in range(WORLD_SIZE)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
    got = {}
    while not results.empty():
        rank, lines = results.get()
        got[rank] = lines
    shown = False
    for rank in range(WORLD_SIZE):
        lines = got.get(rank, [f"no result (the process died or hung: exit code {procs[rank].exitcode})"])
        shown = shown or bool(lines)
        for line in lines or ["as expected"]:
            print(f"rank {rank}: {line}")
    print("DEVIATION SHOWN" if shown else "not reproduced")
    sys.exit(1 if shown else 0)
'''


def repro_path(entry: Entry) -> Optional[str]:
    return os.path.join(REPROS, f"{entry.repro}.py") if entry.repro else None


def script(entry: Entry) -> str:
    """The whole standalone script of ``entry`` (its repro module, then the harness)."""
    path = repro_path(entry)
    if path is None or not os.path.exists(path):
        raise LookupError(f"{entry.id} has no reproduction script (no repro = ... in its entry, or no {path})")
    with open(path) as f:
        body = f.read()
    head = f"# {entry.id}: minimal reproduction. Run it: python THIS_FILE (exit code 1: the deviation shows).\n"
    return head + body.rstrip("\n") + "\n" + HARNESS


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(entry: Entry) -> list[str]:
    lines = []
    peer = BY_NAME.get(entry.impl)
    if peer is not None and peer.requires:
        name = peer.distribution.split("==")[0]
        lines.append(f"{name} {_version(name)}")
    lines += [f"torch {_version('torch')}", f"Python {platform.python_version()} ({platform.platform()})"]
    return lines


def run_script(text: str, timeout_s: float = 300.0) -> tuple[int, str]:
    """Run a report's script in its own process; its exit code and output."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "repro.py")
        with open(path, "w") as f:
            f.write(text)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        env.pop("PYTHONPATH", None)  # standalone: the library and torch only, not this checkout
        try:
            r = subprocess.run([sys.executable, path], cwd=tmp, env=env, capture_output=True, text=True,
                               timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return -1, f"(the script did not finish within {timeout_s:g} s)"
    if r.returncode in (0, DEVIATION_SHOWN) and "no result" not in r.stdout:  # the harness's lines only
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("rank ") or ln in _VERDICTS]
        return r.returncode, "\n".join(lines)
    return r.returncode, (r.stdout + r.stderr[-3000:]).rstrip()


def report(entry: Entry, run: bool = True) -> str:
    text = script(entry)
    parts = [f"# {entry.id} ({entry.impl})", "", "## Environment", *[f"- {v}" for v in versions(entry)], "",
             "## What happens", entry.reason.strip(), ""]
    if entry.upstream:
        parts += [f"Upstream: {entry.upstream}", ""]
    parts += ["## Minimal reproduction (truth: nn.Linear / exact float64 sums)", "```python", text.rstrip(), "```", ""]
    if run:
        code, out = run_script(text)
        verdict = {DEVIATION_SHOWN: "the deviation shows", 0: "NOT reproduced here"}.get(code, f"exit code {code}")
        parts += [f"## Expected vs got (this machine: {verdict})", "```", out, "```"]
    return "\n".join(parts) + "\n"


def entries(files: list[str]) -> list[Entry]:
    return list(KnownFailures.load([KNOWN_DEVIATIONS, *files]).entries)


def main(args) -> int:
    found = entries(args.known_failures)
    if args.list or not args.id:
        for e in found:
            mark = "script" if e.repro else "-"
            print(f"{e.id:<52} {e.impl:<12} {mark}")
        return 0
    by_id = {e.id: e for e in found}
    entry = by_id.get(args.id)
    if entry is None:
        print(f"report-deviation: no deviation {args.id!r}; --list lists them", file=sys.stderr)
        return 2
    try:
        print(report(entry, run=not args.no_run), end="")
    except LookupError as exc:
        print(f"report-deviation: {exc}", file=sys.stderr)
        return 2
    return 0


def register(sub) -> None:
    p = sub.add_parser("report-deviation", help="print a known deviation as a self-contained upstream bug report")
    p.add_argument("id", nargs="?", help="the deviation's id (known_deviations.toml)")
    p.add_argument("--list", action="store_true", help="list the deviations (and which have a script)")
    p.add_argument("--no-run", action="store_true", help="print the script without running it")
    p.add_argument("--known-failures", action="append", default=[], metavar="FILE", help="more deviation files")
    p.set_defaults(func=main)
