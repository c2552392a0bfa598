"""The verdict's side of ``torchrun`` mode: the ranks are torchrun's processes, reached through its store.

``python -m tpconform torchrun`` (``tpconform.transport.torchrun_rank``) runs as every process of a
``torchrun`` launch, on one machine or many. Each one forks its rank's worker (the same
``tpconform.transport.worker`` as always), which talks to the verdict through the store torchrun already
provides at ``MASTER_ADDR:MASTER_PORT`` (reachable from every node), and watches it. Rank 0's
process also starts the verdict: ``pytest --tp-torchrun=ADDR:PORT ...``, a fresh process that never
imports the candidate. In it, :class:`StorePool` stands in for ``harness.GroupPool`` and
:class:`StoreGroup` for ``harness.ProcessGroup`` (same interface), so Hypothesis, the float64
reference and every comparison run exactly as they do with local groups; only the transport differs.

Keys and queues (all under ``tpconform/<torchrun run id>/<restart count>/``, so they never meet
torch's own); every wait on them is a blocking ``queue_pop``/``wait`` (no polling):

- queue ``to/<rank>``: messages to a rank: ``<seq>\n`` + ``tpconform.transport.wire`` bytes;
- queue ``from``: every rank's answers: ``<rank> <seq>\n`` + ``R`` and the worker's wire bytes, or
  ``<rank> -1\nD<why>`` from a rank's process when its worker died;
- queue ``ready``: ``<rank>\nok`` once a rank's worker has joined the group, or ``<rank>\nD<why>``;
- key ``ctl/<k>`` (``k`` from the counter ``ctl``): ``dump`` (each rank pushes every thread's stack
  of its worker to queue ``stack/<k>``) or ``end`` (each rank kills its worker and exits).

Every wait is bounded by ``--tp-timeout`` as with local groups. What differs: a group cannot be
restarted under torchrun, so the first example that hangs, crashes or raises ends the run — that
example fails with every rank's stack, the ranks are told to end, and the remaining tests are
skipped with the reason. Hypothesis cannot shrink such an example (the ranks are gone): examples it
tries afterwards are rejected, and its final replay of the failing example gets the same failure.

Trust: the workers reach the store too (their process group rendezvouses there), so a candidate can
write to these queues — forge or steal answers, end the run. That buys it nothing a local worker
does not have: answers are decoded by ``tpconform.transport.wire`` (plain data only), must carry the
request's sequence number and are type-checked before any property reads them; the inputs in the
messages are all a rank ever sees (the expected values never enter the store); disruption is a
failure or a bounded timeout, never a pass.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from tpconform.transport import wire
from tpconform.transport.contract import MAX_MESSAGE_BYTES, GroupFailure, ReplyWait

START_TIMEOUT_S = 60.0  # at least this long for every rank's worker to start and join (plus --tp-timeout)
OP_TIMEOUT_S = 60.0  # a store operation that is not a wait (its host is gone after this long)
STACK_WAIT_S = 3.0  # how long a stack dump waits for the ranks' answers
ENDED_NOTE = "torchrun: the ranks cannot be restarted, so the run ends with this example"


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) → ``(host, port)``; ``ValueError`` otherwise."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def connect(host: str, port: int, prefix: str, timeout_s: float, is_master: bool = False):
    """A client of the store at ``host:port`` (or its host), seeing only the keys under ``prefix``."""
    store = dist.TCPStore(host, port, is_master=is_master, wait_for_workers=False,
                          timeout=timedelta(seconds=timeout_s))
    return dist.PrefixStore(prefix, store)


def _pop(store, queue: str, timeout_s: float) -> Optional[bytes]:
    """The next item of ``queue``, waiting at most ``timeout_s``; ``None`` when none came. (An item
    pushed after a timed-out pop stays in the queue.)"""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            store.set_timeout(timedelta(seconds=remaining))
            try:
                return bytes(store.queue_pop(queue, block=True))
            except dist.QueueEmptyError:
                # woken with nothing to take: the store wakes waiters spuriously when a client
                # that was waiting disconnects (a worker that died); wait again
                time.sleep(0.001)
            except dist.DistStoreError as exc:
                if "timeout" in str(exc).lower():
                    return None
                raise
    finally:
        store.set_timeout(timedelta(seconds=OP_TIMEOUT_S))  # for the other operations


def _framed(raw: bytes, fields: int) -> tuple[int, int, bytes]:
    """``(rank, seq, body)`` of an item ``"<rank>[ <seq>]\\n<body>"`` (seq -1 if absent); a worker
    can write to the store too, so an item that is not framed so is ``(-1, -1, why)``."""
    head, sep, body = raw.partition(b"\n")
    try:
        numbers = [int(x) for x in head.split()]
        if not sep or len(numbers) != fields:
            raise ValueError
    except ValueError:
        return -1, -1, b"Ean item in the store is not framed as a rank's answer: " + raw[:80]
    return numbers[0], numbers[1] if fields == 2 else -1, body


def _in_hypothesis() -> bool:
    try:
        from hypothesis.control import currently_in_test_context  # lazy: the verdict's; the ranks run without it

        return currently_in_test_context()
    except Exception:
        return False


class StoreGroup:
    """The ranks of a torchrun launch, as one group; the interface of ``harness.ProcessGroup``."""

    def __init__(self, store, world_size: int, timeout_s: float, where: str = ""):
        self.store = store
        self.world_size = world_size
        self.timeout_s = timeout_s
        self.where = where
        self.examples_run = 0
        self.loaded_impls: set = set()
        self.lost: Optional[str] = None  # why the group is gone (first line), once it is
        self._seq = 0
        self._last: tuple[Any, Any] = (None, None)  # the last request's messages and outcome
        self._lost_key: Optional[bytes] = None
        self._lost_outcome: Any = None
        self._ended = False

    @classmethod
    def connect(cls, host: str, port: int, prefix: str, world_size: int, timeout_s: float) -> "StoreGroup":
        """Connect to the store and wait (bounded) until every rank's worker has joined the group."""
        try:
            store = connect(host, port, prefix, timeout_s=max(timeout_s, 30.0))
        except Exception as exc:
            raise GroupFailure(f"cannot reach the torchrun store at {host}:{port}: {exc}") from None
        group = cls(store, world_size, timeout_s, f"{host}:{port}")
        group._wait_ready(max(START_TIMEOUT_S, timeout_s + 40.0))
        return group

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(range(self.world_size))
        while pending:
            raw = _pop(self.store, "ready", deadline - time.monotonic())
            if raw is None:
                self._fail(f"rank(s) {sorted(pending)} did not start within {timeout_s:.0f} s")
            r, _, value = _framed(raw, 1)
            if r not in pending:
                continue
            pending.discard(r)
            if value != b"ok":
                self._fail(f"rank {r}'s worker {value[1:].decode(errors='replace')} during start-up")

    # -- messaging ---------------------------------------------------------------------------
    def request(self, messages: dict[int, dict], timeout_s: Optional[float] = None,
                what: str = "the example", synchronized: bool = True,
                while_waiting: Optional[Callable[[], None]] = None) -> dict[int, Any]:
        """Send one message to each rank named, run ``while_waiting`` (the verdict's own work) while
        the ranks work, wait (bounded) for every reply, as ``ProcessGroup.request`` does (sequence
        numbers, error and finished-rank grace periods)."""
        if self.lost is not None:
            return self._after_loss(messages)
        self._last = (messages, None)
        self._seq += 1
        seq = self._seq
        encoded: dict[int, bytes] = {}  # one encoding per distinct message (most requests send every rank the same)
        try:
            for rank, message in messages.items():
                if id(message) not in encoded:
                    encoded[id(message)] = f"{seq}\n".encode() + wire.encode({**message, "seq": seq})
                self.store.queue_push(f"to/{rank}", encoded[id(message)])
            if while_waiting is not None:
                while_waiting()
            replies = self._gather(what, set(messages), seq, timeout_s or self.timeout_s, synchronized)
        except GroupFailure as exc:
            self._last = (messages, exc)
            raise
        except (RuntimeError, OSError) as exc:  # the store itself failed (its host is gone)
            self._last = (messages, None)
            self._fail(f"the torchrun store at {self.where} stopped answering during {what}: {exc}", dump=False)
        self._last = (messages, replies)
        return replies

    def _gather(self, what: str, ranks: set, seq: int, timeout_s: float, synchronized: bool) -> dict[int, Any]:
        waiting = ReplyWait(what, ranks, timeout_s, seq, synchronized)
        while not waiting.done:
            raw = _pop(self.store, "from", waiting.remaining())
            if raw is None:
                self._fail(waiting.expired())
            r, s, body = _framed(raw, 2)
            if s == -1 or r not in range(self.world_size):  # a rank's process saw its worker die
                self._decode(r, body, what)  # fails
            if s != seq or r not in ranks or r in waiting.replies:
                continue  # an answer to an earlier request that was given up on
            reply = self._decode(r, body, what)
            wrong = waiting.out_of_turn(r, reply)
            if wrong:
                self._fail(wrong)
            waiting.accept(r, reply)
        return waiting.replies

    def _decode(self, r: int, raw: bytes, what: str) -> Any:
        kind, body = raw[:1], raw[1:]
        if r < 0:
            self._fail(f"{body.decode(errors='replace')} (during {what})")
        if kind == b"D":
            self._fail(f"rank {r} {body.decode(errors='replace')} during {what}; "
                       "a rank must never exit mid-example, whatever its exit code")
        if kind != b"R":
            self._fail(f"rank {r}: {body.decode(errors='replace')} during {what}")
        if len(body) > MAX_MESSAGE_BYTES:
            self._fail(f"rank {r} sent a message over {MAX_MESSAGE_BYTES >> 20} MiB during {what}")
        try:
            return wire.decode(body)
        except wire.WireError as exc:
            self._fail(f"rank {r} sent a message outside the wire format: {exc}")

    # -- failure -----------------------------------------------------------------------------
    def _fail(self, reason: str, dump: bool = True) -> None:
        stacks = self.dump_stacks() if dump else "(no stacks: the store is gone)"
        failure = GroupFailure(f"{reason}\n{stacks}\n{ENDED_NOTE}")
        self._lose(reason.splitlines()[0], failure)
        raise failure

    def _lose(self, why: str, outcome: Any) -> None:
        """The group is gone: remember why, and the request it was lost on (with ``outcome``, what
        that request returned or raised), so a replay of that request gets the same answer."""
        if self.lost is None:
            self.lost = why
            messages = self._last[0]
            self._lost_key = None if messages is None else self._key(messages)
            self._lost_outcome = outcome
        self._end()

    @staticmethod
    def _key(messages: dict) -> bytes:
        return hashlib.sha1(wire.encode(messages)).digest()

    def _after_loss(self, messages: dict[int, dict]) -> dict[int, Any]:
        if self._lost_key is not None and self._key(messages) == self._lost_key:
            if isinstance(self._lost_outcome, BaseException):
                raise GroupFailure(str(self._lost_outcome))
            if self._lost_outcome is not None:
                return self._lost_outcome
        if _in_hypothesis():  # Hypothesis shrinking: this example cannot be run; try no other
            from hypothesis import reject  # lazy: the verdict's; the ranks run without it

            reject()
        raise GroupFailure(f"the torchrun group was lost earlier ({self.lost}); {ENDED_NOTE}")

    def _ctl(self, command: bytes) -> int:
        k = int(self.store.add("ctl", 1))
        self.store.set(f"ctl/{k}", command)
        return k

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            try:
                self._ctl(b"end")
            except Exception:
                pass  # the store is gone: so are the ranks' processes

    def dump_stacks(self) -> str:
        """Every rank's Python stack now (its torchrun process signals its worker, as
        ``ProcessGroup.dump_stacks`` does), or why a rank has none."""
        try:
            k = self._ctl(b"dump")
        except Exception as exc:
            return f"(no stacks: the torchrun store is gone: {exc})"
        stacks: dict[int, str] = {}
        deadline = time.monotonic() + STACK_WAIT_S
        while len(stacks) < self.world_size:
            raw = _pop(self.store, f"stack/{k}", deadline - time.monotonic())
            if raw is None:
                break
            r, _, answer = _framed(raw, 1)
            body = answer[1:].decode(errors="replace")
            stacks[r] = f"--- rank {r}: {body}" if answer[:1] == b"D" else f"--- rank {r} stack:\n{body}"
        return "\n".join(stacks.get(r, f"--- rank {r}: no stack came back within {STACK_WAIT_S:.0f} s "
                                       "(its torchrun process is gone or not answering)")
                         for r in range(self.world_size))

    @property
    def healthy(self) -> bool:
        return self.lost is None

    def close(self, graceful: bool = True) -> None:
        """What ``Runner`` calls when a rank raised or sent a malformed result: a local group would be
        rebuilt; under torchrun the ranks end, and so does the run."""
        if self.lost is None:
            outcome = self._last[1] if self._last[1] is not None else None
            self._lose("a rank raised or sent a malformed result mid-example, so the group's state is "
                       "unknown", outcome)

    def shutdown(self) -> None:
        """The run is over: every rank's process kills its worker and exits."""
        self._end()

    def __hash__(self) -> int:
        return id(self)


class StorePool:
    """``harness.GroupPool`` for torchrun mode: one group, of the torchrun world size, never rebuilt."""

    def __init__(self, host: str, port: int, prefix: str, world_size: int, timeout_s: float):
        torch.set_num_threads(1)  # as GroupPool: the verdict's tensors are small, its cores the ranks'
        self.host, self.port, self.prefix = host, port, prefix
        self.world_size = world_size
        self.timeout_s = timeout_s
        self.group: Optional[StoreGroup] = None
        self.starts = 0

    @property
    def describe_world_size(self) -> int:
        """The group ``Runner.describe`` asks (only its rank 0 loads the impl for the description)."""
        return self.world_size

    @property
    def lost(self) -> Optional[str]:
        """Why the remaining tests cannot run (``None`` while they can)."""
        if self.group is None or self.group.lost is None:
            return None
        return f"the torchrun group was lost in an earlier example ({self.group.lost}); {ENDED_NOTE}"

    def get(self, world_size: int) -> StoreGroup:
        if world_size != self.world_size:
            raise GroupFailure(f"this torchrun launch has {self.world_size} ranks; a world of {world_size} "
                               "cannot run in it")
        if self.group is None:
            self.starts += 1
            self.group = StoreGroup.connect(self.host, self.port, self.prefix, self.world_size, self.timeout_s)
        return self.group

    def close(self) -> None:
        if self.group is not None:
            self.group.shutdown()
