"""What every family's verdict side beyond the single layer does the same way, so each family's
``verdict.py`` reads like its spec.

An extension module defines its case, its properties and a few lines gluing these together:

- :func:`run_on_every_rank`: send one worker command (registered in the family's ``worker.py``) for a case
  to each of its ranks and collect their replies;
- :func:`run_built_first`: the same for code whose ranks hold slices along a partition it chooses: a
  build-only (or forward-only) round learns the partition, then each rank is sent its slices alone;
- :func:`preconditions`: the violations that stop a property from being evaluated (the run did not
  complete, or a rank's construction raised);
- :func:`compare_on_rank` / :func:`compare_fields`: one rank's reply against the dense expectation,
  within a bound, as violations;
- :func:`rank_slice`: a rank's slice of a dim split into the partition a layer chose (read from its
  shard shapes by :func:`tpconform.spec.partition.partition`);
- :class:`ExtensionFamily`: a family whose verdict module has ``evidence`` and ``violations``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar, Union

import torch
from tpconform.families.registry import family_of
from tpconform.spec.compare import compare
from tpconform.spec.family import Family
from tpconform.spec.partition import partition
from tpconform.spec.plain_case import for_workers
from tpconform.spec.violations import Violation

T = TypeVar("T")


def run_on_every_rank(suite, case, command: str, data: Union[dict, Callable[[int], dict]],
                      while_waiting: Optional[Callable[[], None]] = None) -> tuple[list[dict], Optional[str]]:
    """Send the worker ``command`` for ``case`` to each of its ``world_size`` ranks, with ``data``
    (the same for every rank: one message, encoded once) or ``data(rank)``, and count the example. The
    case goes without its seed (:func:`tpconform.spec.plain_case.for_workers`): a tensor a rank is sent a slice
    of is sent as that slice, never whole. ``while_waiting()`` runs in this process while the ranks work
    (the float64 truth: :func:`truth_while_ranks_run`); not at all when the group failed before the send.

    Returns every rank's reply in rank order (``[]`` when the run did not complete) and why it did
    not complete (``None`` when it did)."""
    ws, head = case.world_size, _head(suite, case, command)
    if callable(data):
        messages = {r: {**head, "data": data(r)} for r in range(ws)}
    else:
        message = {**head, "data": data}
        messages = {r: message for r in range(ws)}
    results, crash = suite.runner.request(ws, messages, while_waiting)
    suite.examples += 1
    return ([results[r] for r in range(ws)] if not crash else []), crash


def truth_while_ranks_run(compute: Callable[[], T]) -> tuple[Callable[[], None], Callable[[], T]]:
    """``(while_waiting, result)`` for :func:`run_on_every_rank`: ``while_waiting`` computes ``compute()`` (a
    family's float64 truth, which needs only the case's own tensors) while the ranks run the example;
    ``result()`` returns it, computing it then if it was not (the ranks were never sent the example, or it
    raised: then it raises there, once the ranks' replies are read)."""
    done: list = []

    def result() -> T:
        if not done:
            done.append(compute())
        return done[0]

    def while_waiting() -> None:
        try:
            result()
        except Exception:  # raised again by result(), after every rank's reply is read: the group stays in step
            pass

    return while_waiting, result


def _head(suite, case, command: str) -> dict:
    family = family_of(case).name
    head = {"cmd": command, "family": family, "impl": suite.impl_spec, "case": for_workers(case)}
    if not suite.capabilities.of(family).backward:
        head["forward_only"] = True  # run under torch.no_grad() (transport/worker.py): no backward asked
    return head


def width_of(key: str, dim: int) -> Callable[[dict], int]:
    """A reply's ``key`` tensor's size along ``dim`` (``-1`` when it has no such dim), for :func:`run_built_first`."""
    def width(res: dict) -> int:
        t = res.get(key)
        return int(t.shape[dim]) if isinstance(t, torch.Tensor) and -t.dim() <= dim < t.dim() else -1
    return width


def run_built_first(suite, case, command: str, build_data: dict,
                    share: Callable[[int, list[int]], dict], width: Callable[[dict], int],
                    total: int) -> tuple[list[dict], Optional[str]]:
    """:func:`run_on_every_rank` for code whose ranks hold slices along a partition it chooses (``width``
    of each rank's reply, of ``total``: a layer's weight shard, a primitive's output): first every rank
    runs on ``build_data`` alone (a layer's weight and bias; ``"stages": []``: the worker builds, or runs
    the forward, and replies), then each rank is sent ``share(rank, partition)``, its own share of every
    tensor, never the whole of one it holds a slice of. The partition is
    :func:`tpconform.spec.partition.partition`'s, so the verdict's slices and the worker's agree. One
    example; at one rank, one round (its share is everything). Returns as :func:`run_on_every_rank`
    does: the first round's replies when the impl offers no such layer or a rank's construction raised."""
    ws = case.world_size
    if ws == 1:
        return run_on_every_rank(suite, case, command, lambda r: share(r, [total]))
    head = _head(suite, case, command)
    first, crash = suite.runner.request(ws, {r: {**head, "stages": [], "data": build_data} for r in range(ws)})
    replies = [first[r] for r in range(ws)] if not crash else []
    if crash or not_offered(replies) or any(res.get("construct_failed_ranks") for res in replies):
        suite.examples += 1
        return replies, crash

    parts = partition([width(res) for res in replies], total, ws)
    return run_on_every_rank(suite, case, command, lambda r: share(r, parts))


def not_offered(ranks: list[dict]) -> bool:
    """Whether the ranks answered that the impl offers no such (optional) layer; all answer alike."""
    return bool(ranks) and bool(ranks[0].get("not_provided"))


def did_not_complete(prop: str, crash: str) -> Violation:
    return Violation(prop, f"the example did not complete: {crash}", None, "run")


def refused_or_computed_right(prop: str, config: str, crash: Optional[str], ranks: list[dict],
                              construction_failed: Callable[[list[int]], str],
                              wrong: Callable[[], list[Violation]], quantity: Optional[str] = None) -> list[Violation]:
    """The rule for a ``config`` (described in words) that the impl's plan cannot express: refused on every rank
    while parallelising, or computed right — never an error after it (``crash``), never a refusal on some ranks
    only (``construction_failed(failed ranks)`` says which), never a wrong result (``wrong()``: the violations
    of the accepted config, each reported under ``quantity`` when given, else its own)."""
    if crash:
        return [Violation(prop, f"{config}: it was not refused while parallelising, and the example failed after "
                                f"it: {crash}", None, "run")]
    failed = ranks[0].get("construct_failed_ranks") if ranks else None
    if failed is not None:
        return [] if len(failed) == len(ranks) else [Violation(prop, construction_failed(failed), None, "construction")]
    return [Violation(prop, f"{config}: accepted without an error, and {v.message}", v.rank, quantity or v.quantity,
                      v.mismatch) for v in wrong()]


def preconditions(prop: str, crash: Optional[str], ranks: list[dict],
                  construction_failed: Callable[[list[int]], str],
                  rejection_declared: bool = False) -> Optional[list[Violation]]:
    """Violations that stop ``prop`` from being evaluated, ``[]`` when the example conforms
    vacuously, ``None`` when ``prop`` should be evaluated (as :func:`tpconform.families.linear.verdict.preconditions`).

    A run that did not complete is a violation; so is a construction that raised on some rank, with
    the message ``construction_failed(failed ranks)`` — unless it raised on every rank and
    ``rejection_declared`` (non-divisible dims, which the impl declares it rejects)."""
    if crash:
        return [did_not_complete(prop, crash)]
    failed = ranks[0].get("construct_failed_ranks") if ranks else None
    if failed is None:
        return None
    if rejection_declared and len(failed) == len(ranks):
        return []  # declared: non-divisible dims are rejected at construction
    return [Violation(prop, construction_failed(failed), None, "construction")]


def compare_on_rank(prop: str, rank: int, got: Any, expected: torch.Tensor, bound: torch.Tensor, what: str,
                    label: Optional[str] = None) -> list[Violation]:
    """Rank ``rank``'s ``what`` (``got``, from its reply) against ``expected`` within ``bound``: ``[]``,
    or the one violation, whose message calls it ``rank {rank} {label or what}``."""
    m = compare(got, expected, bound, f"rank {rank} {label or what}")
    return [Violation(prop, str(m), rank, what, m)] if m else []


def compare_fields(prop: str, rank: int, reply: Any,
                   checks: Iterable[tuple[str, torch.Tensor, torch.Tensor]]) -> list[Violation]:
    """:func:`compare_on_rank` for each ``(key, expected, bound)``: the reply's ``key`` field, called
    by its key with spaces (``input_grad``: "input grad")."""
    return [v for key, expected, bound in checks
            for v in compare_on_rank(prop, rank, reply.get(key), expected, bound, key.replace("_", " "))]


def rank_slice(sizes: list[int], rank: int) -> slice:
    """Rank ``rank``'s slice of a dim split into ``sizes``, in rank order."""
    return slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))


class ExtensionFamily(Family):
    """A family whose verdict module has ``evidence(suite, case)`` (``None``: not offered) and
    ``violations(suite, case, prop, ev)``, and whose examples always run whole (no stages)."""

    verdict: Any = None  # the family's verdict module

    def not_applicable(self, suite, variant, prop: str) -> Optional[str]:
        undeclared = self.not_declared(suite, variant, prop)
        if undeclared:
            return undeclared
        if not suite._dtypes(self.name):
            return f"{suite.impl_spec} declares {self.title} for none of the dtypes {list(suite.dtypes)}"
        return None

    def run(self, suite, case, stages: Optional[Sequence[str]] = None):
        ev = self.verdict.evidence(suite, case)
        offered = getattr(ev, "provided", True)
        return ev if ev is not None and (offered or getattr(ev, "crash", None)) else None

    def judge(self, ev, prop: str) -> list[Violation]:
        return self.verdict.violations(None, ev.case, prop, ev)
