"""A suite that expects the known failures: an example whose every violation a known-failures entry
explains passes (and the search goes on); one that an entry applies to but does not explain fails
with a line naming it. The entries and their matching: :mod:`tpconform.engine.known_failures`."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tpconform.engine.known_failures import Entry, KnownFailures


class ExpectingSuite:
    """A :class:`~tpconform.engine.suite.Suite` whose ``check`` lets an example pass when every violation
    is explained by a known failure, and remembers which entries it used for the current test."""

    def __init__(self, suite, known: KnownFailures):
        self._suite, self.known = suite, known
        self.used: list[Entry] = []
        self._misses: list[str] = []  # the current example's entries that apply but do not explain it

    def __getattr__(self, name):
        return getattr(self._suite, name)

    def check(self, case, prop: str) -> None:
        with self._bounded(prop, case), self._noting_misses():
            self._suite.check(case, prop, self._explained)

    def check_all(self, case, props) -> None:
        """``Suite.check_all``, each property's violations triaged as in :meth:`check`."""
        with self._bounded(props, case), self._noting_misses():
            self._suite.check_all(case, props, self._explained)

    @contextmanager
    def _noting_misses(self) -> Iterator[None]:
        """A failure report gains a line per entry that applies to its example but does not explain it."""
        self._misses = []
        try:
            yield
        except AssertionError as exc:
            if not self._misses:
                raise
            raise type(exc)("\n".join([str(exc), *dict.fromkeys(self._misses)])) from None  # a PropertyViolated stays one

    def _bounded(self, props, case):
        """The example's run bounded by the known hang that applies to it, if any (``timeout_s``)."""
        hang = self.known.bound(self._suite.impl_spec, props, case)
        return self._suite.bounded(hang.timeout_s if hang else None, f"known failure {hang.id}" if hang else "")

    def _explained(self, prop: str, case, violations) -> bool:
        """Whether every violation of ``prop`` in this example (maybe none) is a known failure; the
        entries used are remembered for the test's xfail line. The suite asks this per example, so an
        expected violation never ends the search: only an unexplained one fails (and is shrunk)."""
        messages = [v.message for v in violations]
        used = self.known.triage(self._suite.impl_spec, prop, case, messages)
        if used is None:
            self._misses += self.known.misses(self._suite.impl_spec, prop, case, messages)
            return False
        self.used.extend(e for e in used if e not in self.used)
        return True
