"""What the engine asks of a transport, and the waiting rules every transport shares.

Two transports carry examples to the ranks: local process groups (:mod:`.harness`, one per world
size) and the ranks of a torchrun launch (:mod:`.torchrun_mode`, through its store). Both are a
:class:`Pool` of :class:`Group` s, and both wait for replies by the same :class:`ReplyWait`: one
deadline, shortened once a rank has raised (the others are likely stuck in a collective it never
joined) or once a rank has finished (the rest should be right behind it), and the same words for
each way a wait can end without every reply.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Protocol

ERROR_GRACE_S = 1.0  # once a rank has raised, how long (at most) the others get to finish before the group is failed
# ... where the transport can see whether the ranks still out are working (local processes): it looks this
# soon, and fails the group at once when none is (asleep in a collective the failed rank never joined: they
# would never reply), else looks again this much later, up to ERROR_GRACE_S
ERROR_FIRST_LOOK_S = 0.05
# ... when its error says a peer's connection went away (that rank died or is dying: a crash's stack dump
# under load takes seconds), so the report names the crash instead of "did not reply"; crashes only
PEER_GONE_GRACE_S = 5.0
PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")
DONE_GRACE_MIN_S = 2.0  # once one rank has finished, the others get at least this long
DONE_GRACE_FACTOR = 4.0  # ... or this many times the time the first rank took
MAX_MESSAGE_BYTES = 256 * 1024**2  # a reply larger than this is refused, not read into memory
MAX_CANDIDATE_TEXT = 4000  # characters of an error a candidate raised that reach a report


class GroupFailure(Exception):
    """The group could not complete a request (a hang, a dead rank, a forged reply); the message
    says why, with every rank's stack."""


class Group(Protocol):
    world_size: int
    timeout_s: float
    examples_run: int
    loaded_impls: set  # impl specs every rank has loaded (see engine.runner)

    def request(self, messages: dict[int, dict], timeout_s: Optional[float] = None, what: str = "the example",
                synchronized: bool = True, while_waiting: Optional[Callable[[], None]] = None) -> dict[int, Any]:
        """Send each rank its message, run ``while_waiting`` meanwhile, return every rank's reply
        (bounded by ``timeout_s``, the group's own by default), or raise :class:`GroupFailure`."""
        ...

    @property
    def healthy(self) -> bool: ...

    def close(self, graceful: bool = True) -> None: ...

    def dump_stacks(self) -> str: ...


class Pool(Protocol):
    timeout_s: float

    def get(self, world_size: int) -> Group:
        """The live group of ``world_size`` ranks (started, or restarted after a failure, as needed)."""
        ...

    def close(self) -> None: ...


def cut_text(text, limit: int = MAX_CANDIDATE_TEXT) -> str:
    """A candidate's error text, cut (a layer may raise a message of any size)."""
    s = str(text)
    return s if len(s) <= limit else s[:limit] + f"… [{len(s) - limit} more characters cut]"


def raised_text(raised: dict) -> str:
    lines = []
    for r, rep in sorted(raised.items()):
        text = cut_text(rep.get("impl_error") or rep.get("error") or "")
        lines.append(f"\nrank {r} raised: {text.strip()}")
    return "".join(lines)


class ReplyWait:
    """The replies to one request, as they come, and how long the ranks still left get."""

    def __init__(self, what: str, ranks, timeout_s: float, seq: Optional[int], synchronized: bool = True,
                 looks_at_work: bool = False):
        self.what, self.ranks, self.timeout_s, self.seq, self.synchronized = what, sorted(ranks), timeout_s, seq, synchronized
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s
        self.replies: dict[int, Any] = {}
        self.grace = ERROR_GRACE_S  # what the others get once a rank has raised
        self.done_grace: Optional[float] = None  # what the others get once a rank has finished (None: none has)
        # whether the waiter looks at the ranks still out once a rank raised (``in_error_grace``), so the error
        # grace may end early; the end of that grace when it may (None: no rank raised, or it may not)
        self.looks_at_work = looks_at_work
        self.error_grace_end: Optional[float] = None

    @property
    def done(self) -> bool:
        return len(self.replies) == len(self.ranks)

    @property
    def pending(self) -> list[int]:
        return [r for r in self.ranks if r not in self.replies]

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def out_of_turn(self, r: int, reply: Any) -> Optional[str]:
        """Why ``reply`` is not rank ``r``'s answer to this request (``None``: it is)."""
        if self.seq is not None and (not isinstance(reply, dict) or reply.get("seq") != self.seq):
            got = reply.get("seq") if isinstance(reply, dict) else type(reply).__name__
            return f"rank {r} answered out of turn during {self.what} (sequence {got!r}, expected {self.seq})"
        return None

    def accept(self, r: int, reply: Any) -> None:
        """Rank ``r``'s reply; the deadline of the others shortens by the grace rules."""
        self.replies[r] = reply
        if isinstance(reply, dict) and reply.get("ok") is False:
            said = f"{reply.get('impl_error') or ''} {reply.get('error') or ''}"
            gone = any(text in said for text in PEER_GONE)
            self.grace = PEER_GONE_GRACE_S if gone else ERROR_GRACE_S
            now = time.monotonic()
            if self.looks_at_work and not gone:
                if self.error_grace_end is None:  # the first raise sets the grace; a second one does not cut it
                    self.error_grace_end = min(self.started + self.timeout_s, now + self.grace)
                self.deadline = min(self.error_grace_end, now + ERROR_FIRST_LOOK_S)
            else:
                self.error_grace_end = None
                self.deadline = min(self.deadline, now + self.grace)
        elif len(self.replies) == 1 and self.synchronized:  # not for work without collectives (loading)
            # Ranks leave their last collective together, so once one rank is done the rest are close
            # behind; a rank far behind is waiting in a collective that a finished rank skipped.
            # Proportional grace keeps slow (loaded) runs safe.
            elapsed = time.monotonic() - self.started
            self.done_grace = max(DONE_GRACE_MIN_S, DONE_GRACE_FACTOR * elapsed)
            self.deadline = min(self.deadline, time.monotonic() + self.done_grace)

    def in_done_grace(self) -> bool:
        """Whether the wait is in the grace the others get after a rank finished (none raised), with time left
        of the example's own timeout: the one wait that may be extended for ranks still working."""
        raised = any(isinstance(rep, dict) and rep.get("ok") is False for rep in self.replies.values())
        return self.done_grace is not None and not raised and time.monotonic() < self.started + self.timeout_s

    def in_error_grace(self) -> bool:
        """Whether a rank raised and the grace the others get is not over: the waiter looks whether they work."""
        return self.error_grace_end is not None and time.monotonic() < self.error_grace_end

    def extend_error_grace(self) -> None:
        """The ranks still out are working: look again soon, never past the error grace."""
        assert self.error_grace_end is not None
        self.deadline = min(self.error_grace_end, time.monotonic() + ERROR_FIRST_LOOK_S)

    def extend_done_grace(self) -> None:
        """Another grace for ranks left behind that are still working (starved on a loaded machine, not asleep
        in a collective): never past the example's timeout."""
        assert self.done_grace is not None
        self.deadline = min(self.started + self.timeout_s, time.monotonic() + self.done_grace)

    def expired(self) -> str:
        """Why the wait ended without every reply (the deadline passed), in words."""
        pending, replies = self.pending, self.replies
        raised = {r: rep for r, rep in replies.items() if isinstance(rep, dict) and rep.get("ok") is False}
        if raised:
            if self.error_grace_end is not None and time.monotonic() < self.error_grace_end:
                return (f"rank(s) {sorted(raised)} raised during {self.what}; rank(s) {pending} stopped working "
                        f"without replying (asleep, likely waiting in a collective the failed rank never joined)"
                        + raised_text(raised))
            return (f"rank(s) {sorted(raised)} raised during {self.what}; rank(s) {pending} did not reply "
                    f"within {self.grace:.1f} s after (likely waiting in a collective the "
                    "failed rank never joined)" + raised_text(raised))
        finished = [r for r, rep in replies.items() if isinstance(rep, dict) and rep.get("ok") is not False]
        elapsed = time.monotonic() - self.started
        if finished and elapsed < self.timeout_s:
            return (f"rank(s) {pending} did not reply within the grace period after rank(s) {finished} "
                    f"finished {self.what} (likely waiting in a collective that a finished rank skipped)")
        return (f"timed out after {elapsed:.1f} s (limit {self.timeout_s:.1f} s, --tp-timeout) waiting for "
                f"{self.what}: rank(s) {pending} did not reply" + (f", rank(s) {sorted(replies)} did" if replies else ""))
