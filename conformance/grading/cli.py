"""``tpconform grade SUBMISSIONS/ --out REPORT/``: grade every submission, resumably, and report.

Each submission's result is written atomically to ``REPORT/submissions/KEY.json`` as soon as it is
graded; a re-run with the same options skips the submissions already graded (a changed submission,
seed, profile or suite is graded again). Scores and reports are rebuilt from those results on every
run, so ``--weights`` can change without re-grading.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib import metadata

import hypothesis
import tpconform
from tpconform.engine import profiles
from tpconform.grading import bwrap, report
from tpconform.grading.contract import ContractError, load_contract
from tpconform.grading.isolation import Limits, SuiteSnapshot, kill_all, read_suite, run_isolated, source_digest
from tpconform.grading.records import Invalid, stored_result, write_atomic
from tpconform.grading.scoring import WeightsError, load_weights
from tpconform.grading.submissions import SubmissionsError, discover
from tpconform.spec.options import DEFAULT_DTYPES, DEFAULT_WORLD_SIZES, OptionError, parse_dtypes, parse_world_sizes
from tqdm import tqdm

RESULTS_DIR = "submissions"
BAD_INPUT = 4  # the exit code for bad input, as ``tpconform check`` (pytest's usage error)


def register(sub) -> None:
    """Add the ``grade`` subcommand to the ``tpconform`` parser."""
    g = sub.add_parser("grade", help="score a folder of submissions, each in an isolated process tree",
                       description="Grades every submission in a folder (NAME.py files in the simple-module "
                                   "convention, NAME/ packages with a tpconform.toml), each in its own sandbox, "
                                   "and writes the class report; an interrupted run resumes. docs/GRADING.md.")
    g.add_argument("submissions", help="a folder of NAME.py files and NAME/ packages (with tpconform.toml)")
    g.add_argument("--out", required=True, help="the report folder (created; results in it are reused)")
    g.add_argument("--seed", type=int, default=0, help="Hypothesis seed: the same seed gives the same scores")
    g.add_argument("--profile", default="ci", choices=("ci", "dev", "thorough"),
                   help="how many examples per variant: ci 15, dev 40, thorough 400 (default: ci)")
    g.add_argument("--examples", type=int, default=None, help="examples per variant (overrides --profile)")
    g.add_argument("--world-sizes", default=None, help="world sizes to draw from (default: 1-8)")
    g.add_argument("--dtypes", default=None, help="dtypes to draw from (default: all four)")
    g.add_argument("--contract", default=None, metavar="FILE",
                   help="the assignment's contract (TOML; docs/GRADING.md): cases inside it are scored, cases "
                        "beyond it are reported for no points. Sets the world sizes and dtypes (not with "
                        "--world-sizes/--dtypes)")
    g.add_argument("--timeout", type=float, default=20.0, help="seconds one example may take (default: 20)")
    g.add_argument("--time-limit", type=float, default=900.0,
                   help="seconds one submission may take in all (default: 900)")
    g.add_argument("--memory-mb", type=int, default=4096, help="resident memory per worker (with the processes it starts), MiB (default: 4096)")
    g.add_argument("--sandbox-memory-mb", type=int, default=None,
                   help="memory one submission may hold in all: every process in its sandbox (the verdict's and any a "
                        "worker detached included) with its files in /tmp and /dev/shm, MiB (default: --memory-mb "
                        f"plus {SANDBOX_MIB_PER_PROCESS} per process a correct submission keeps: the verdict, its "
                        "forkserver and a worker per rank of each world size)")
    g.add_argument("--weights", default=None, help="a TOML weights file (default: conformance/grading/weights.toml)")
    g.add_argument("--jobs", type=int, default=None,
                   help="submissions graded at once (default: one per CPU, at most 8, as many as the available memory "
                        "holds for the world sizes graded: on 2 cores, one submission's start-up overlaps the other's "
                        "examples)")
    g.add_argument("--gradescope", action="store_true", help="also write gradescope/KEY/results.json")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--unsandboxed", action="store_true",
                   help="grade without the bubblewrap sandbox (only for code you trust: a submission can then "
                        "read and write whatever your user can); without this flag, grade refuses to run when no "
                        "sandbox can be made")
    g.set_defaults(func=main)


class UsageProblem(Exception):
    pass


WORKER_GIB = 0.25  # resident memory of one worker, or of a verdict process or its forkserver (measured: ~0.2)
SANDBOX_MIB_PER_PROCESS = 512  # the whole sandbox's default bound, per process it keeps (twice WORKER_GIB)


def default_sandbox_memory_mb(memory_mb: int, world_sizes) -> int:
    """The whole sandbox's memory bound when ``--sandbox-memory-mb`` is not given: one worker at its own
    bound (``--memory-mb``) and every other process a correct submission keeps (the verdict, its forkserver
    and ``sum(world_sizes)`` workers) at twice what one holds."""
    return memory_mb + SANDBOX_MIB_PER_PROCESS * (sum(world_sizes) + 2)


def default_jobs(world_sizes) -> int:
    """Submissions graded at once when ``--jobs`` is not given: one per usable CPU, at most 8, and no
    more than the available memory holds (a verdict keeps a group of each world size alive: its
    forkserver, itself and ``sum(world_sizes)`` workers), under the container's limits if it has any."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup("cpu.max")
    if quota and quota[0] != "max":
        cpus = min(cpus, max(1, int(int(quota[0]) / int(quota[1]))))
    available = _meminfo_gib("MemAvailable") or 2.0 * cpus
    limit = _cgroup("memory.max")
    if limit and limit[0] != "max":
        available = min(available, int(limit[0]) / 2**30)
    per_job = WORKER_GIB * (sum(world_sizes) + 2)
    return max(1, min(cpus, 8, int(available // per_job)))


def _cgroup(name: str) -> list[str]:
    try:
        with open(os.path.join("/sys/fs/cgroup", name)) as fh:
            return fh.read().split()
    except OSError:
        return []


def _meminfo_gib(key: str) -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _options(args) -> dict:
    contract = None
    if args.contract:
        if args.world_sizes or args.dtypes:
            raise UsageProblem("--contract sets the world sizes and dtypes: leave out --world-sizes and --dtypes")
        contract = load_contract(args.contract)
        sizes, dtypes = list(contract.world_sizes), list(contract.dtypes)
    else:
        try:
            sizes = parse_world_sizes(args.world_sizes or DEFAULT_WORLD_SIZES)
            dtypes = parse_dtypes(args.dtypes or DEFAULT_DTYPES)
        except OptionError as exc:
            raise UsageProblem(str(exc)) from None
    if args.jobs is None:
        args.jobs = default_jobs(sizes)
    examples = args.examples
    if examples is None:
        examples = profiles.build(args.profile, "grading", db_root=tempfile.gettempdir()).max_examples
    sandbox_memory_mb = args.sandbox_memory_mb
    if sandbox_memory_mb is None:
        sandbox_memory_mb = default_sandbox_memory_mb(args.memory_mb, sizes)
    for name, value in (("--examples", examples), ("--jobs", args.jobs), ("--memory-mb", args.memory_mb),
                        ("--sandbox-memory-mb", sandbox_memory_mb)):
        if value < 1:
            raise UsageProblem(f"{name}={value}: must be at least 1")
    for name, value in (("--timeout", args.timeout), ("--time-limit", args.time_limit)):
        if value <= 0:
            raise UsageProblem(f"{name}={value}: must be positive")
    return {"seed": args.seed, "profile": args.profile, "examples": examples,
            "world_sizes": ",".join(map(str, sizes)), "dtypes": ",".join(dtypes), "timeout_s": args.timeout,
            "time_limit_s": args.time_limit, "memory_mb": args.memory_mb, "sandbox_memory_mb": sandbox_memory_mb,
            "contract": contract.as_dict() if contract else None}


def _sandbox(args) -> str:
    """The sandbox the run grades in, checked after what the user typed (the folder, the options): a machine
    without bubblewrap is told once the command is otherwise right."""
    if args.unsandboxed:
        return "none (--unsandboxed)"
    why = bwrap.unavailable()
    if why:
        raise UsageProblem(f"no sandbox: {why}; refusing to run untrusted code (pass --unsandboxed to run "
                           "trusted submissions without one)")
    return bwrap.version()


def run_record(options: dict, weights) -> dict:
    """What the report records about the run, so the same seed and profile can be checked again."""
    # torch's version read from its metadata, not imported: the host imports no torch (the verdict runs it)
    return {"suite_version": tpconform.__version__, "suite_sha256": source_digest(),
            "torch_version": metadata.version("torch"), "hypothesis_version": hypothesis.__version__,
            "python_version": sys.version.split()[0], **options, "weights": weights.as_dict()}


def _fingerprint(sub, options: dict, suite_sha: str) -> str:
    keep = {k: options[k] for k in ("seed", "examples", "world_sizes", "dtypes", "timeout_s", "time_limit_s",
                                    "memory_mb", "sandbox_memory_mb", "sandbox", "contract")}
    if keep["contract"]:  # the file's place does not change a grade; what it says does
        keep["contract"] = {k: v for k, v in keep["contract"].items() if k != "source"}
    blob = json.dumps([sub.kind, sub.impl, sub.sha256() if sub.kind != "invalid" else sub.problem, keep, suite_sha],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _finished(path: str, fingerprint: str, sub):
    """The stored record at ``path`` if it is ``sub``'s (its key), for this fingerprint, and passes
    the schema check; with ``sub``'s name and path as they are now."""
    try:
        if os.path.getsize(path) > 64 << 20:
            return None
        with open(path) as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            return None
        if data.get("key") != sub.key:
            return None  # another submission's (or from before keys): never reported as this one
        data["result"] = stored_result(data.get("result"))
        data.update(name=sub.name, path=sub.path)
    except (OSError, ValueError, RecursionError, Invalid):
        return None  # damaged or forged: graded again
    return data


def _grade(sub, options: dict, snapshots, fingerprint: str, path: str) -> dict:
    record = {"name": sub.name, "key": sub.key, "path": sub.path, "kind": sub.kind, "impl": sub.impl,
              "fingerprint": fingerprint, "sha256": sub.sha256() if sub.kind != "invalid" else None}
    if sub.kind == "invalid":
        record["result"] = {"problem": sub.problem}
    else:
        snapshot = snapshots.get()
        try:
            result = run_isolated(sub, snapshot, seed=options["seed"], examples=options["examples"],
                                  world_sizes=options["world_sizes"], dtypes=options["dtypes"],
                                  timeout_s=options["timeout_s"],
                                  limits=Limits(options["time_limit_s"], options["memory_mb"],
                                                sandbox_memory_mb=options.get("sandbox_memory_mb")),
                                  sandboxed=not options["sandbox"].startswith("none"),
                                  contract_json=json.dumps(options["contract"]) if options["contract"] else None)
            changed = snapshot.changed()
            if changed:
                result["tampered"] = changed
                snapshot.rebuild()  # from the bytes read when the run started, never from the checkout
        finally:
            snapshots.put(snapshot)
        record["result"] = result
    write_atomic(path, record)
    return record


def main(args) -> int:
    try:
        options = _options(args)
        weights = load_weights(args.weights)
        subs = discover(args.submissions)
        options["sandbox"] = _sandbox(args)
        os.makedirs(os.path.join(args.out, RESULTS_DIR), exist_ok=True)
    except (UsageProblem, WeightsError, SubmissionsError, ContractError) as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:
        print(f"grade: --out={args.out}: cannot create it: {exc.strerror}", file=sys.stderr)
        return BAD_INPUT
    started = time.time()
    record = run_record(options, weights)
    records, todo = {}, []
    for sub in subs:
        path = os.path.join(args.out, RESULTS_DIR, f"{sub.key}.json")
        fp = _fingerprint(sub, options, record["suite_sha256"])
        done = _finished(path, fp, sub)
        if done:
            records[sub.key] = done
        else:
            todo.append((sub, fp, path))
    reused = len(records)
    try:
        _grade_all(todo, options, records, args)
    except KeyboardInterrupt:
        print(f"grade: interrupted; {len(records)} of {len(subs)} results kept in {args.out}/{RESULTS_DIR}: "
              "run the same command again to resume", file=sys.stderr)
        return 130
    record["seconds_grading"] = round(time.time() - started, 2)
    ordered = [records[s.key] for s in subs]
    paths = report.write_all(args.out, record, ordered, weights, gradescope_files=args.gradescope)
    print(f"graded {len(todo)} submission(s), reused {reused} finished earlier, in {record['seconds_grading']:.1f} s; "
          f"report: {paths['html']}")
    return 0


def _grade_all(todo, options, records, args) -> None:
    jobs = max(1, min(args.jobs, len(todo) or 1))
    snapshots: queue.Queue = queue.Queue()
    pristine = read_suite() if todo else {}
    made = [SuiteSnapshot(pristine) for _ in range(jobs)] if todo else []
    for s in made:
        snapshots.put(s)
    bar = tqdm(total=len(todo), unit="submission", disable=args.no_progress or not todo, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(_grade, sub, options, snapshots, fp, path): sub for sub, fp, path in todo}
        for fut in as_completed(futures):
            rec = fut.result()
            records[rec["key"]] = rec
            bar.set_postfix_str(rec["key"])
            bar.update()
    except BaseException:
        kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
        for s in made:
            s.remove()
