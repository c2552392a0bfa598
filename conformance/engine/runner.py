"""Drive one impl over persistent groups: load it (once per group), send each rank its message for one
example, and collect every rank's checked reply, whatever the family (each family's ``run`` builds the
messages and reads the replies: the linear one in :mod:`tpconform.families.linear.run`)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from tpconform.families.registry import families
from tpconform.spec.results import malformed
from tpconform.spec.violations import fold_ranks
from tpconform.transport.contract import GroupFailure, Pool, cut_text
from tpconform.transport.harness import GroupPool


class ImplUnusable(Exception):
    """The impl could not be loaded in a worker; the message is one line for the user."""


def _results(replies: dict[int, Any]) -> tuple[dict[int, Any], Optional[str]]:
    results, bad = {}, []
    for r, rep in sorted(replies.items()):
        why = malformed(rep.get("result"))
        if why:
            bad.append(f"rank {r} sent a malformed result: {why}")
        else:
            results[r] = rep["result"]
    return results, "\n".join(bad) or None


def _checked_description(d: Any, spec: str) -> dict:
    """The impl's self-description, or :class:`ImplUnusable` when it is not well formed."""
    from tpconform.impls.protocol import Capabilities

    try:
        caps = Capabilities.from_dict(d["capabilities"])
        unknown = sorted(set(caps.families) - set(families()))
        if unknown:
            raise ValueError(f"capabilities for unknown families {unknown} (the families: {sorted(families())})")
        if not isinstance(d.get("name"), str):
            raise TypeError("name is not a str")
        setup_s = d.get("setup_timeout_s", LOAD_TIMEOUT_S)
        if isinstance(setup_s, bool) or not isinstance(setup_s, (int, float)) or not 0 < setup_s <= MAX_SETUP_S:
            raise ValueError(f"setup_timeout_s={setup_s!r} is not a number of seconds in (0, {MAX_SETUP_S:.0f}]")
    except Exception as exc:
        raise ImplUnusable(f"--impl={spec}: its description is malformed: {type(exc).__name__}: {exc}") from None
    return d


def probe_sums(rank: int, world_size: int, reply: dict) -> Optional[dict]:
    """What rank ``rank``'s probe must report: the sum of ``r + 1`` over the world, and over each TP sub-group
    the worker keeps (``transport.tp_groups``: consecutive ranks, ``tp_size`` of them), by its size."""
    sizes = reply.get("sums")
    if not isinstance(sizes, dict) or "0" not in sizes or not all(type(k) is str and k.isdigit() for k in sizes):
        return None
    want = {"0": world_size * (world_size + 1) / 2}
    for key in sizes:
        t = int(key)
        if t > 0 and world_size % t == 0:
            start = rank // t * t
            want[key] = sum(r + 1 for r in range(start, start + t))
    return want


PROBE_TIMEOUT_S = 3.0  # the probe of a group every rank of which raised: one all-reduce of one value and a barrier
LOAD_TIMEOUT_S = 120.0  # importing a library on every rank of a fresh group (megatron at 8 ranks: ~30 s)
MAX_SETUP_S = 1800.0  # the longest one-time set-up an impl may declare (setup_timeout_s)


class Runner:
    """Drives one impl (by its ``--impl`` spec) over a pool of process groups."""

    def __init__(self, impl_spec: str, pool: Optional[Pool] = None, describe_world_size: int = 1):
        self.impl_spec = impl_spec
        self.pool: Pool = pool or GroupPool()
        self.describe_world_size = describe_world_size  # the group whose rank 0 loads the impl first (a run's own)
        self._description: Optional[dict] = None
        self.example_timeout: Optional[tuple[float, str]] = None  # (s, why): instead of --tp-timeout (Suite.bounded)
        # the dtypes the conversion and mixed-precision stages draw from, whatever the impl declares (a grade
        # judges every dtype it grades: a narrower declaration must not skip a stage for free); None: declared
        self.judged_dtypes: Optional[tuple[str, ...]] = None
        # the kernel's byte count of a loopback no one else shares (tpconform.transport.loopback), read
        # around every request of an example; None: not measured
        self.traffic: Optional[Callable[[], int]] = None

    def describe(self) -> dict[str, Any]:
        """Name, version and capabilities, as the impl declares them (loaded in a worker)."""
        if self._description is None:
            try:
                group = self.pool.get(getattr(self.pool, "describe_world_size", self.describe_world_size))  # torchrun: its one world
                reply = group.request({0: {"cmd": "describe", "impl": self.impl_spec}}, what="loading the impl",
                                      timeout_s=max(LOAD_TIMEOUT_S, group.timeout_s), synchronized=False)[0]
            except GroupFailure as exc:
                raise ImplUnusable(f"--impl={self.impl_spec}: loading it crashed its worker: "
                                   f"{str(exc).splitlines()[0]}") from None
            if not reply.get("ok"):
                raise ImplUnusable(cut_text(reply.get("impl_error") or str(reply.get("error", "unknown error")).splitlines()[0]))
            self._description = _checked_description(reply.get("describe"), self.impl_spec)
        return self._description

    def _group(self, world_size: int):
        """The group for ``world_size``, with the impl already loaded on every rank.

        Loading (importing the library, one-time set-up) gets its own, longer bound, so the
        per-example ``--tp-timeout`` measures the example alone; a load that fails is reported by
        the example that follows."""
        group = self.pool.get(world_size)
        if self.impl_spec not in group.loaded_impls:
            self._load_impl(group)
        return group

    def _load_timeout_s(self) -> float:
        return max(LOAD_TIMEOUT_S, self.pool.timeout_s, self.describe().get("setup_timeout_s", LOAD_TIMEOUT_S))

    def _load_impl(self, group) -> None:
        """Load the impl on every rank of ``group`` and run its one-time set-up (bounded by its own timeout)."""
        from tpconform.transport.stale_locks import remove_stale_extension_locks

        remove_stale_extension_locks()  # a build killed earlier must not hang this one's set-up
        group.request({r: {"cmd": "describe", "impl": self.impl_spec, "setup": True} for r in range(group.world_size)},
                      timeout_s=self._load_timeout_s(), what="loading the impl and its set-up", synchronized=False)
        group.loaded_impls.add(self.impl_spec)

    def _in_step(self, group, world_size: int) -> bool:
        """Whether ``group`` still runs collectives in step: every rank joins one all-reduce of ``rank + 1`` on
        the world and on each TP sub-group the workers keep, then a barrier, within :data:`PROBE_TIMEOUT_S`, and
        reports the right sums (:func:`probe_sums`; a rank left a collective ahead or behind the others would
        wait, or sum another collective's data). A failed probe has closed the group (``GroupFailure``); a
        wrong sum leaves the caller to close it."""
        try:
            replies = group.request({r: {"cmd": "probe"} for r in range(world_size)}, timeout_s=PROBE_TIMEOUT_S,
                                    what="a probe of the group after every rank raised")
        except GroupFailure:
            return False
        for r, rep in replies.items():
            want = probe_sums(r, world_size, rep) if isinstance(rep, dict) and rep.get("ok") else None
            if want is None or rep.get("sums") != want:
                return False
        return True

    def start_groups(self, world_sizes: Sequence[int]) -> None:
        """Start the groups of ``world_sizes`` side by side in the background, each with the impl loaded on
        every rank, and return at once (the caller goes on: pytest collects the tests meanwhile). A pool that
        cannot (torchrun's one group) starts each group on first use, as it always does."""
        start = getattr(self.pool, "start_in_background", None)
        if start is not None:
            self.describe()  # the load's bound reads it, and it is asked here, never from the threads
            start(world_sizes, self._load_impl, prepare_timeout_s=self._load_timeout_s())

    def request(self, world_size: int, messages: dict[int, dict],
                while_waiting: Optional[Callable[[], None]] = None,
                sent: Optional[list[int]] = None) -> tuple[dict[int, Any], Optional[str]]:
        """Send one message per rank (each may differ), run ``while_waiting`` while the ranks work,
        and collect every rank's ``result``: ``(results, None)``, or ``({}, why)`` when the example
        did not complete on every rank. With :attr:`traffic`, the loopback bytes of the request alone
        (not the group's start or the impl's loading) are added to ``sent[0]``."""
        bound = self.example_timeout
        try:
            group = self._group(world_size)
            before = self.traffic() if self.traffic is not None and sent is not None else None
            try:
                replies = group.request(messages, timeout_s=bound[0] if bound else None, while_waiting=while_waiting)
            finally:
                if before is not None and self.traffic is not None and sent is not None:
                    sent[0] += self.traffic() - before
        except GroupFailure as exc:
            return {}, (f"(example bounded at {bound[0]:g} s by {bound[1]}, not --tp-timeout) " if bound else "") + str(exc)
        errors = [(r, rep) for r, rep in sorted(replies.items()) if not rep.get("ok")]
        if errors:
            # a rank may have raised mid-collective: the group's state is unknown, and it is started again
            # (with the impl loaded on every rank: seconds for a library). Kept where that cannot be so: one
            # rank has no peer; and where every rank raised (none is waiting in a collective) and a probe of
            # the group (an all-reduce and a barrier, its sum checked here) comes back right. A first attempt's
            # crashes shrink mostly on such groups; a library's deviations that raise cost no restart each.
            if world_size > 1 and not (len(errors) == world_size and isinstance(self.pool, GroupPool)
                                       and self._in_step(group, world_size)):
                group.close()  # (torchrun's one group is not probed: a lost one cannot be started again)
            return {}, "\n".join(fold_ranks([(r, f"rank {r} raised: {cut_text(rep.get('impl_error') or rep.get('error'))}")
                                              for r, rep in errors]))
        results, bad = _results(replies)
        if bad:
            group.close(graceful=False)
            return {}, bad
        for stage_error in ("train_step_error", "usage_error", "conversion_error", "state_dict_error",
                            "mixed_precision_error"):
            raised = [isinstance(res, dict) and stage_error in res for res in results.values()]
            if any(raised) and not all(raised):
                group.close()  # a stage raised on some ranks only: the group's state is unknown
                break
        return results, None
