"""Run one layer case of one impl on a persistent group; return what every rank reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from conformance.cases import CaseTensors, LayerCase, make_tensors
from conformance.harness import GroupFailure, GroupPool


class ImplUnusable(Exception):
    """The impl could not be loaded in a worker; the message is one line for the user."""


@dataclass
class Outcome:
    """What came back from one example: per-rank results, or why there are none."""

    case: LayerCase
    tensors: CaseTensors
    ranks: list[dict] = field(default_factory=list)  # per-rank result dicts (plain tensors)
    crash: Optional[str] = None  # hang / death / exception text, when the example did not complete

    @property
    def construct_failed(self) -> bool:
        return bool(self.ranks) and "construct_failed_ranks" in self.ranks[0]


class Runner:
    """Drives one impl (by its ``--impl`` spec) over a pool of process groups."""

    def __init__(self, impl_spec: str, pool: Optional[GroupPool] = None):
        self.impl_spec = impl_spec
        self.pool = pool or GroupPool()
        self._description: Optional[dict] = None

    def describe(self) -> dict[str, Any]:
        """Name, version and capabilities, as the impl declares them (loaded in a worker)."""
        if self._description is None:
            group = self.pool.get(1)
            reply = group.request({0: {"cmd": "describe", "impl": self.impl_spec}})[0]
            if not reply.get("ok"):
                raise ImplUnusable(reply.get("impl_error") or reply.get("error", "unknown error").splitlines()[0])
            self._description = reply["describe"]
        return self._description

    def request(self, world_size: int, messages: dict[int, dict]) -> tuple[dict[int, Any], Optional[str]]:
        """Send one message per rank (each may differ) and collect every rank's ``result``:
        ``(results, None)``, or ``({}, why)`` when the example did not complete on every rank."""
        try:
            group = self.pool.get(world_size)
            replies = group.request(messages)
        except GroupFailure as exc:
            return {}, str(exc)
        errors = [(r, rep) for r, rep in sorted(replies.items()) if not rep.get("ok")]
        if errors:
            group.close()  # a rank raised mid-collective: the group's state is unknown
            return {}, "\n".join(f"rank {r} raised: {rep.get('impl_error') or rep.get('error')}" for r, rep in errors)
        return {r: rep["result"] for r, rep in replies.items()}, None

    def run(self, case: LayerCase) -> Outcome:
        tensors = make_tensors(case)
        outcome = Outcome(case, tensors)
        message = {"cmd": "run", "impl": self.impl_spec, "case": case.as_dict(), "data": tensors.as_dict()}
        try:
            group = self.pool.get(case.world_size)
            replies = group.request({r: message for r in range(case.world_size)})
        except GroupFailure as exc:
            outcome.crash = str(exc)
            return outcome
        errors = [(r, rep) for r, rep in sorted(replies.items()) if not rep.get("ok")]
        if errors:
            group.close()  # a rank raised mid-collective: the group's state is unknown
            outcome.crash = "\n".join(
                f"rank {r} raised: {rep.get('impl_error') or rep.get('error')}" for r, rep in errors
            )
            return outcome
        outcome.ranks = [replies[r]["result"] for r in range(case.world_size)]
        return outcome
