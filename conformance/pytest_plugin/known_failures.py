"""``--known-failures`` in pytest: the suite wrapped to expect the entries, a test whose only failures
were explained reported as xfail, a stale entry failing the run (xdist workers' counts added up on the
controller). The file format and the matching: :mod:`tpconform.engine.known_failures`."""

from __future__ import annotations

import pytest
from tpconform.engine.expecting import ExpectingSuite
from tpconform.engine.known_failures import KnownFailures, KnownFailuresError, default_files


class PytestKnownFailures:
    """Turns a test whose only failures were explained into xfail; fails the run on stale entries."""

    def __init__(self, expecting: ExpectingSuite):
        self.expecting = expecting

    def pytest_collection_finish(self, session):
        """The properties this run's tests judge (after ``-k`` and file selection): an entry is judged
        stale only where each property it is about ran (``KnownFailures.left_out``)."""
        pairs = []
        for item in session.items:
            marker = item.get_closest_marker("tp_property")
            if marker is not None:
                pairs.append((str(marker.args[0]), str(marker.args[1])))
        self.expecting.known.select(pairs)

    def pytest_runtest_setup(self, item):
        self.expecting.used.clear()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.when != "call":
            return
        ran = not report.skipped  # a test that skipped itself (e.g. no world size it needs) ran no case
        if report.passed and self.expecting.used:
            report.outcome = "skipped"
            report.wasxfail = "known deviation: " + "; ".join(e.describe() for e in self.expecting.used)
        callspec = getattr(item, "callspec", None)
        params = {str(v) for v in callspec.params.values()} if callspec else set()
        for e in self.expecting.known.entries:
            variants = set(e.variant) if isinstance(e.variant, list) else {e.variant}
            if (not ran or e.test != getattr(item, "originalname", item.name)
                    or ("*" not in variants and not variants & params)):
                continue
            e.applicable += 1
            if report.failed and e.explains(str(report.longrepr)):
                e.matched += 1
                report.outcome = "skipped"
                report.wasxfail = f"known deviation: {e.describe()}"

    def pytest_terminal_summary(self, terminalreporter):
        lines = self.expecting.known.summary()
        if lines:
            terminalreporter.section("tpconform known failures")
            for line in lines:
                terminalreporter.write_line(line, red=line.startswith("STALE"))

    def pytest_sessionfinish(self, session):
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller judges the whole run
            workeroutput["tpconform_known_failures"] = {e.id: (e.applicable, e.matched)
                                                        for e in self.expecting.known.entries}
            workeroutput["tpconform_selected"] = sorted(self.expecting.known.selected or ())
            return
        if self.expecting.known.stale() and session.exitstatus == 0:
            session.exitstatus = 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """xdist controller: add each worker's counts, so an entry is stale only if no worker matched it."""
        counts = getattr(node, "workeroutput", {}).get("tpconform_known_failures", {})
        for e in self.expecting.known.entries:
            applicable, matched = counts.get(e.id, (0, 0))
            e.applicable += applicable
            e.matched += matched
        self.expecting.known.select(tuple(pair) for pair in getattr(node, "workeroutput", {}).get("tpconform_selected", ()))


def for_pytest(config, suite):
    """``suite``, wrapped to expect the known failures of ``--known-failures`` and the impl's own."""
    paths = [*(config.getoption("known_failures") or []), *default_files(suite.impl_spec)]
    try:
        known = KnownFailures.load(dict.fromkeys(paths)).for_impl(suite.impl_spec)
    except KnownFailuresError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not known.entries:
        return suite
    expecting = ExpectingSuite(suite, known)
    config.pluginmanager.register(PytestKnownFailures(expecting), "tpconform-known-failures")
    return expecting
