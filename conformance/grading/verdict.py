"""The verdict process of one submission: ``python -P -m tpconform.grading.verdict``.

Started by :mod:`tpconform.grading.isolation` (in the sandbox unless ``--unsandboxed``), it grades
one submission with :class:`tpconform.grading.one.Grader` and writes its records to
``--result-fd``. In this order, before any candidate code can run:

1. it hardens itself (:func:`harden`) and sets its resource limits, which every worker inherits;
2. it imports torch, then forks the forkserver from itself
   (:func:`tpconform.transport.forkserver.start_forked`: torch imported once per sandbox, not once
   here and once in a spawned forkserver), whose warm-up then runs beside this process's other imports;
3. it imports the grader (Hypothesis, the suite), freezes what the imports built out of the
   garbage collector's reach, and grades.

Before step 2, it reads the impl's leading imports (:mod:`tpconform.impls.preflight`, no candidate
code runs): one that cannot import (a syntax error, a missing module) is recorded as unusable at
once, with no forkserver, torch import or process group.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import traceback


def harden() -> None:
    """Before any worker exists: no submission folder on ``sys.path`` (``-P`` already keeps the
    working directory off it), not dumpable (no ptrace, no ``/proc/PID/mem``/``fd`` for the
    candidate's processes), SIGINT ignored (the grader ends this process by SIGKILL)."""
    import ctypes
    import signal

    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tpconform.grading.verdict")
    p.add_argument("--impl", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--examples", type=int, required=True)
    p.add_argument("--world-sizes", required=True)
    p.add_argument("--dtypes", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--result-fd", type=int, required=True)
    p.add_argument("--shown-as", default=None, help="the impl spec that replay commands name")
    p.add_argument("--limit-seconds", type=float, default=None)
    p.add_argument("--limit-memory-mb", type=int, default=None)
    p.add_argument("--limit-file-mb", type=int, default=None)
    p.add_argument("--contract-json", default=None, help="the grader's contract (Contract.as_dict), as JSON")
    p.add_argument("--private-network", action="store_true",
                   help="the sandbox gave this process a network namespace of its own (bwrap --unshare-all): its "
                        "loopback's byte count measures the submission's traffic (tpconform.transport.loopback)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    harden()
    if a.limit_seconds is not None:
        from tpconform.grading.limits import Limits

        Limits(a.limit_seconds, a.limit_memory_mb, a.limit_file_mb).apply()
    from tpconform.impls import preflight

    why = preflight.static_reason(a.impl)  # a syntax error, a missing module: told in milliseconds
    if why:
        with os.fdopen(a.result_fd, "w") as out:
            out.write(json.dumps({"unusable": why[:2000]}) + "\n" + json.dumps({"done": True}) + "\n")
        return 0
    import torch  # noqa: F401 - imported once here: the forkserver forked next shares it
    from tpconform.transport import forkserver

    forkserver.start_forked()

    from tpconform.grading import records
    from tpconform.grading.contract import Contract
    from tpconform.grading.one import Grader
    from tpconform.spec.options import parse_world_sizes
    from tpconform.transport.harness import DEFAULT_MEMORY_LIMIT

    # what the imports built (torch's registrations: most of this process's objects) lives as long as the
    # process: out of the collector's reach, every later collection skips it (Hypothesis's first seeding
    # forces a full collection, and examples trigger more: measured 0.1-0.4 s per full one with torch loaded)
    gc.freeze()
    out = os.fdopen(a.result_fd, "w", buffering=1)

    def emit(record: dict) -> None:
        # every record built by its definition (records.py), candidate text cut here already: the grader
        # checks and cuts again, and refuses a field no definition has
        if "cell" in record:
            record = {"cell": records.cell(record["cell"])}
        elif "failure" in record:
            record = {"failure": records.failure(record["failure"])}
        elif "describe" in record:  # what the impl says of itself, projected onto the record
            try:
                record = {"describe": records.describe(record["describe"], keep_known=True)}
            except records.Invalid as exc:
                record = {"unusable": f"its description cannot be reported: {exc}"}
        out.write(json.dumps(record) + "\n")

    grader = Grader(a.impl, seed_value=a.seed, examples=a.examples, world_sizes=parse_world_sizes(a.world_sizes),
                    dtypes=a.dtypes.split(","), timeout_s=a.timeout, emit=emit, shown_as=a.shown_as,
                    memory_limit=a.limit_memory_mb * 2**20 if a.limit_memory_mb else DEFAULT_MEMORY_LIMIT,
                    contract=Contract.from_dict(json.loads(a.contract_json)) if a.contract_json else None,
                    private_network=a.private_network)
    try:
        grader.run()
        emit({"done": True})
    except BaseException:
        traceback.print_exc()  # into the log the grader keeps, before it can end this process
        sys.stderr.flush()
        raise
    finally:
        out.close()  # the end of the records: the grader kills this process tree from here on
        grader.suite.pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
