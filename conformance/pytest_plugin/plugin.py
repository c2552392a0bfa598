"""The pytest plugin: ``--impl`` and friends, the ``tp_suite`` fixture, the report header.

Registered through the ``pytest11`` entry point, so any repo where tpconform is installed can run
``pytest --impl=...`` (the installed property tests, ``tpconform.properties``, are collected when no
test path is given).

Imports that load torch (the engine, the transport's groups, the strategies) stay in the hooks that
need them: the entry point loads this module in every pytest run where tpconform is installed.
"""

from __future__ import annotations

import gc
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from tpconform.engine import profiles
from tpconform.impls.protocol import ALL_PRIMITIVES
from tpconform.impls.registry import ImplError, available, classify
from tpconform.spec import options
from tpconform.transport import backends, forkserver


@dataclass
class RunState:
    """What one pytest run holds for the suite, kept in ``config.stash`` (as pytest-xdist keeps its own)."""

    world_sizes: list[int] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    backend_note: str = ""  # what --backend left out (e.g. world sizes above the GPU count)
    backend_skip: Optional[str] = None  # why every suite test is skipped (no world size can run)
    suite: Any = None  # the Suite (wrapped for known failures), made on first use
    pool: Any = None  # the process groups (GroupPool, or torchrun's StorePool)


STATE = pytest.StashKey[RunState]()
PROPERTIES = "tpconform.properties"  # the property tests, as installed (tests/properties in a checkout)


def state(config) -> RunState:
    return config.stash[STATE]


def pytest_addoption(parser):
    g = parser.getgroup("tpconform", "tensor-parallel conformance")
    g.addoption("--impl", default=None, metavar="SPEC",
                help="implementation to check: a registry name, path/to/file.py, or module:object "
                     "(default: reference)")
    g.addoption("--list-impls", action="store_true", help="list the registry's implementations and exit")
    g.addoption("--tp-profile", default="ci", choices=profiles.PROFILES, help="Hypothesis profile (default: ci)")
    g.addoption("--world-sizes", default=options.DEFAULT_WORLD_SIZES, metavar="LIST",
                help="world sizes to draw from, e.g. '1-8' or '2,3,4' (default: 1-8)")
    g.addoption("--dtypes", default=options.DEFAULT_DTYPES, metavar="LIST",
                help="dtypes to draw from (comma-separated)")
    g.addoption("--tp-timeout", type=float, default=20.0, metavar="SECONDS",
                help="seconds an example may take before it fails as a hang (default: 20)")
    g.addoption("--backend", default="gloo", choices=("gloo", "nccl"),
                help="process-group backend: gloo (CPU, default) or nccl (one rank per GPU; world sizes "
                     "above the GPU count are skipped)")
    g.addoption("--tp-memory-limit", default="3G", metavar="SIZE",
                help="resident memory per worker (with the processes it starts), measured from outside it, "
                     "e.g. 3G or 2500M; 0 for none (default: 3G)")
    g.addoption("--known-failures", action="append", default=[], metavar="FILE",
                help="a TOML file of known deviations: matching failures become xfail, an entry that "
                     "matches nothing fails the run (repeatable; a peer's own file is always applied)")
    # torchrun mode (tpconform.transport.torchrun_mode): set by ``python -m tpconform torchrun`` on rank 0
    g.addoption("--tp-torchrun", default=None, metavar="ADDR:PORT",
                help="run on the ranks of a torchrun launch, through its store at ADDR:PORT "
                     "(set by: torchrun ... -m tpconform torchrun --impl=SPEC)")
    g.addoption("--tp-torchrun-world-size", type=int, default=0, metavar="N", help="torchrun mode: its world size")
    g.addoption("--tp-torchrun-prefix", default="tpconform", metavar="PREFIX", help="torchrun mode: its store keys")


def pytest_cmdline_main(config):
    if config.getoption("list_impls"):
        entries = available()
        width = max(len(n) for n in entries)
        for e in entries.values():
            tag = "" if e.correct else "  [seeded bug]"
            print(f"{e.name:<{width}}  {e.summary}{tag}")
        return 0
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "tp_property(family, property): the test judges that property of that family")
    run = config.stash[STATE] = RunState()
    if config.get_verbosity() < 2 and hasattr(config.option, "force_short_summary"):
        # a report is many lines; on CI (CI=true) pytest would repeat each in full in the short summary
        config.option.force_short_summary = True
    try:
        run.world_sizes = options.parse_world_sizes(config.getoption("world_sizes"))
        run.dtypes = options.parse_dtypes(config.getoption("dtypes"))
    except options.OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    run.backend_skip = _select_backend(config)
    if config.getoption("tp_torchrun"):
        from tpconform.pytest_plugin import torchrun  # lazy: imports torch (see the module doc)

        # only the torchrun world size; --backend's GPUs are per node
        run.world_sizes, run.backend_skip, run.backend_note = torchrun.configure(config, run.world_sizes)
    profiles.activate(config.getoption("tp_profile"), _impl_spec(config))
    _collect_the_suite(config)
    if config.getoption("impl") is not None and not config.getoption("list_impls"):
        # a typo (no such file, no such name), a syntax error or a missing leading import, told before anything
        # starts (no torch, no forkserver), read from the source alone (impls/preflight.py: nothing runs)
        from tpconform.impls.preflight import static_reason

        try:
            how, _ = classify(_impl_spec(config))
        except ImplError as exc:
            raise pytest.UsageError(str(exc)) from None
        why = None if how == "registry" else static_reason(_impl_spec(config))
        if why:
            raise pytest.UsageError(why)
    if _starts_local_groups(config):
        # its torch import and warm-up (~3 s of CPU) run beside this process's own imports, on the other core
        forkserver.start_early()


def _starts_local_groups(config) -> bool:
    """Whether this run will start local process groups: an impl to check, a backend that can run,
    not torchrun's ranks (``--tp-torchrun``), not ``--list-impls``."""
    return (config.getoption("impl") is not None and not config.getoption("list_impls")
            and not state(config).backend_skip and not config.getoption("tp_torchrun"))


def _runs_tests_here(config) -> bool:
    """Whether this process runs the tests it collects: not ``--collect-only``, not pytest-xdist's
    controller (its workers run them, each with its own groups)."""
    return not config.getoption("collectonly") and not config.pluginmanager.has_plugin("dsession")


def _collect_the_suite(config) -> None:
    """``pytest --impl=X`` with no test paths runs the suite's property tests, wherever it is run:
    a student's folder, another repository (whose own tests or ``testpaths`` are not the suite), a
    checkout. Paths or ``--pyargs`` given on the command line are kept as they are."""
    if config.getoption("impl") is None or config.args_source == pytest.Config.ArgsSource.ARGS:
        return

    spec = importlib.util.find_spec(PROPERTIES)
    config.args = list(spec.submodule_search_locations)


def _select_backend(config) -> Optional[str]:
    """Apply ``--backend`` (before any group starts) and keep the world sizes it can run here;
    return why every suite test must be skipped (``None``: some can run)."""
    run = state(config)
    backend = config.getoption("backend")
    backends.select(backend)
    run.world_sizes, run.backend_note = backends.runnable_world_sizes(backend, run.world_sizes)
    return None if run.world_sizes else run.backend_note


def _impl_spec(config) -> str:
    return config.getoption("impl") or "reference"


def _make_suite(config):
    """Start the suite for ``--impl`` and check the impl loads; one clear line if it does not."""
    run = state(config)
    if run.suite is None:
        from tpconform.engine.runner import ImplUnusable  # lazy: torch (see the module doc)
        from tpconform.engine.suite import Suite  # lazy: torch (see the module doc)

        spec = _impl_spec(config)
        try:
            classify(spec)
            suite = Suite(spec, _pool(config), world_sizes=run.world_sizes, dtypes=run.dtypes)
            suite.description  # loads the impl in a worker
            empty = nothing_to_check(suite)
            if empty:
                raise ImplUnusable(f"--impl={spec}: nothing to check: {empty}")
            if _runs_tests_here(config):
                suite.start_groups()  # every world size's group starts while pytest collects the tests
        except (ImplError, ImplUnusable) as exc:
            raise pytest.UsageError(str(exc)) from None
        from tpconform.pytest_plugin.known_failures import for_pytest  # lazy: torch (see the module doc)

        run.suite = for_pytest(config, suite)
    return run.suite


def nothing_to_check(suite) -> Optional[str]:
    """Why nothing can be checked (an impl declaring no dtype or variant would otherwise pass with every
    test skipped), or ``None``. An impl that declares no layers at all (``column_gather_output`` and
    ``row_input_is_parallel`` empty: a collectives-only library, ``impls/peers/distnn.py``) is checked on the
    other families when it declares one of the run's dtypes for one of them."""
    from tpconform.families.registry import families, primary  # lazy: torch (see the module doc)
    from tpconform.strategies import VARIANTS  # lazy: torch (see the module doc)

    reasons = [suite.unsupported(v) for v in VARIANTS]
    if not all(reasons):
        return None
    caps = suite.capabilities
    if caps.column_gather_output or caps.row_input_is_parallel:
        return reasons[0]
    others = [name for name in families() if name != primary().name and suite._dtypes(name)]
    return None if others else reasons[0]


def _pool(config):
    run = state(config)
    if run.pool is None and config.getoption("tp_torchrun"):
        from tpconform.pytest_plugin import torchrun  # lazy: imports torch

        run.pool = torchrun.pool_for(config)
    if run.pool is None:
        from tpconform.transport.harness import GroupPool, parse_size  # lazy: torch (see the module doc)

        try:
            limit = parse_size(config.getoption("tp_memory_limit"))
        except ValueError as exc:
            raise pytest.UsageError(f"--tp-memory-limit: {exc}") from None
        run.pool = GroupPool(timeout_s=config.getoption("tp_timeout"), memory_limit=limit)
    return run.pool


def pytest_sessionstart(session):
    if session.config.getoption("impl") is not None and not session.config.getoption("list_impls") \
            and not state(session.config).backend_skip:
        _make_suite(session.config)


def pytest_report_header(config) -> Optional[list[str]]:
    run = state(config)
    suite = run.suite
    if suite is None:
        return None
    import torch  # lazy: torch (see the module doc)

    d = suite.description
    # the primitives an impl may offer: a subset only is news (all of them is the default, also of an impl
    # that offers no primitives at all, which the primitives family's skips say)
    caps = ", ".join(f"{k}={v}" for k, v in d["capabilities"].items()
                     if not (k == "primitives" and tuple(v) == ALL_PRIMITIVES))
    declared = d["capabilities"].get("dtypes")
    checked = [t for t in run.dtypes if declared is None or t in declared]
    left_out = [t for t in run.dtypes if t not in checked]
    from tpconform.engine.suite import declared_limits  # lazy: torch (see the module doc)

    limits = [f"tpconform: not checked, as declared: {line}" for line in declared_limits(suite)]
    return [
        f"tpconform: impl={suite.impl_spec} ({d['name']} {d.get('version') or ''}".rstrip() + ")",
        f"tpconform: capabilities: {caps}", *limits,
        f"tpconform: torch {torch.__version__}, backend {config.getoption('backend')}"
        + (f" ({run.backend_note})" if run.backend_note else "")
        + f", world sizes {run.world_sizes}, "
        f"dtypes {checked}" + (f" (not declared by the impl: {left_out})" if left_out else "")
        + f", profile {profiles.active_name()}",
    ]


def pytest_collection_modifyitems(session, config, items):
    uses_suite = [item for item in items if "tp_suite" in getattr(item, "fixturenames", ())]
    if not uses_suite:
        return
    run = state(config)
    if run.backend_skip:  # e.g. --backend nccl on a machine without GPUs: start nothing
        for item in uses_suite:
            item.add_marker(pytest.mark.skip(reason=run.backend_skip))
        return
    suite = _make_suite(config)
    from tpconform.families.registry import family  # lazy: torch (see the module doc)

    for item in uses_suite:
        marker = item.get_closest_marker("tp_property")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None:
            continue
        fam, prop = family(marker.args[0]), marker.args[1]
        variant = callspec.params.get("variant")
        reason = (fam.unsupported(suite, variant) if prop == "*" and hasattr(fam, "unsupported")
                  else fam.not_applicable(suite, variant, prop))
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_collection_finish(session):
    """Once the tests are collected, what this process built so far (torch and its registrations, the
    families, the collected items: most of its objects, alive until the run ends) goes out of the garbage
    collector's reach, as in the grading verdict and the forkserver: every full collection the examples
    trigger then walks only what they made (docs/PROFILE.md: the collections of a default run's parent)."""
    if state(session.config).suite is not None and _runs_tests_here(session.config):
        gc.freeze()


def pytest_terminal_summary(terminalreporter, config):
    """Which case classes and pairs of classes each property met (families/linear/case_classes.py): a class
    or a pair no example reached is a place a bug could still hide."""
    run = config.stash.get(STATE, None)
    suite = getattr(run, "suite", None)
    if suite is None or not getattr(suite, "coverage", None):
        return
    from tpconform.engine.suite import coverage_lines  # lazy: torch (see the module doc)

    terminalreporter.section("tpconform coverage by case class and by pairs of classes")
    lines = coverage_lines(suite)
    if config.get_verbosity() <= 0:  # only the properties that missed something (-v: every one's count)
        lines = [line for line in lines if "not met" in line] or [
            f"each of the {len(lines)} properties judged met every case class and pair (-v: each one's count)"]
    for line in lines:
        terminalreporter.write_line(line, yellow="not met" in line)
    if terminalreporter.stats.get("failed") and config.get_verbosity() <= 0:
        terminalreporter.write_line("each failure above is its shrunk case; pytest -v shows pytest's full traceback")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A violated property's report is the failure, alone: the shrunk case, its symptoms and the
    replay line, without pytest's source listing or Hypothesis's notes about the suite's own code
    (``-v`` keeps pytest's full report)."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and report.failed and call.excinfo is not None and item.config.get_verbosity() <= 0:
        violated = _property_violated(call.excinfo.value)
        if violated is not None:
            report.longrepr = _folded(item, str(violated))


SHOWN = pytest.StashKey[dict]()  # a failure's case and symptoms -> the test whose report showed them


def _folded(item, text: str) -> str:
    """``text``, or, when an earlier test of this run failed on the same case with the same symptoms
    (one crash seen by several properties), one line: its first line and a pointer to that report."""
    lines = text.splitlines()
    body = tuple(line for line in lines[1:] if not line.startswith("replay:"))
    shown = item.config.stash.setdefault(SHOWN, {})
    first = shown.setdefault(body, item.nodeid)
    if first == item.nodeid or len(body) < 2:
        return text
    return f"{lines[0]}: the same case and symptoms as {first} above (its replay line, with --property)"


def _property_violated(exc: BaseException):
    """The :class:`~tpconform.engine.report.PropertyViolated` that ``exc`` is or holds, or ``None``."""
    from tpconform.engine.report import PropertyViolated  # lazy: torch (see the module doc)

    if isinstance(exc, PropertyViolated):
        return exc
    for inner in getattr(exc, "exceptions", ()):  # Hypothesis's group of distinct failures
        found = _property_violated(inner)
        if found is not None:
            return found
    return None


def pytest_runtest_setup(item):
    """Under torchrun a lost group cannot be rebuilt: once it is gone, the remaining suite tests skip."""
    lost = getattr(state(item.config).pool, "lost", None)
    if lost and "tp_suite" in getattr(item, "fixturenames", ()):
        pytest.skip(lost)


@pytest.fixture(scope="session")
def tp_pool(request):
    """The process groups of this session (one per world size), shared by every suite."""
    return _pool(request.config)


@pytest.fixture(scope="session")
def tp_suite(request):
    """The suite for the impl under test (``--impl``), with its process groups."""
    return _make_suite(request.config)


def pytest_unconfigure(config):
    run = config.stash.get(STATE, None)
    if run is not None and run.pool is not None:
        run.pool.close()
        run.pool = run.suite = None
