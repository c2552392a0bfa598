"""Run one layer case of one impl on a persistent group; return what every rank reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from tpconform.families.registry import families
from tpconform.spec.cases import (
    STAGES,
    CaseTensors,
    LayerCase,
    conversion_for,
    declared_stages,
    for_workers,
    make_tensors,
    mixed_precision_for,
    partition,
)
from tpconform.spec.results import RankResult, malformed
from tpconform.spec.violations import fold_ranks
from tpconform.transport.contract import GroupFailure, Pool, cut_text
from tpconform.transport.harness import GroupPool


class ImplUnusable(Exception):
    """The impl could not be loaded in a worker; the message is one line for the user."""


@dataclass
class Outcome:
    """What came back from one example: per-rank results, or why there are none."""

    case: LayerCase
    tensors: CaseTensors
    ranks: list[RankResult] = field(default_factory=list)  # what each rank reported
    crash: Optional[str] = None  # hang / death / exception text, when the example did not complete
    stages: tuple = STAGES  # what the workers ran after building the layer (tpconform.spec.cases.STAGES)
    # stage "conversion": (build dtype, method) the verdict chose (cases.conversion_for); None: not run
    conversion: Optional[tuple[str, str]] = None
    # stage "mixed_precision": (parameter dtype, compute dtype) the verdict chose (cases.mixed_precision_for)
    mixed_precision: Optional[tuple[str, str]] = None
    # bytes the network namespace's loopback carried while the ranks built and ran it, read by this
    # process from the kernel (Runner.traffic); None where no private count exists (outside the sandbox)
    loopback_bytes: Optional[int] = None

    @property
    def construct_failed(self) -> bool:
        return bool(self.ranks) and self.ranks[0].construct_failed


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


LOAD_TIMEOUT_S = 120.0  # importing a library on every rank of a fresh group (megatron at 8 ranks: ~30 s)
MAX_SETUP_S = 1800.0  # the longest one-time set-up an impl may declare (setup_timeout_s)


class Runner:
    """Drives one impl (by its ``--impl`` spec) over a pool of process groups."""

    def __init__(self, impl_spec: str, pool: Optional[Pool] = None):
        self.impl_spec = impl_spec
        self.pool: Pool = pool or GroupPool()
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
                group = self.pool.get(getattr(self.pool, "describe_world_size", 1))  # torchrun: its one world
                reply = group.request({0: {"cmd": "describe", "impl": self.impl_spec}}, what="loading the impl",
                                      timeout_s=max(LOAD_TIMEOUT_S, group.timeout_s), synchronized=False)[0]
            except GroupFailure as exc:
                raise ImplUnusable(f"--impl={self.impl_spec}: loading it crashed its worker: "
                                   f"{str(exc).splitlines()[0]}") from None
            if not reply.get("ok"):
                raise ImplUnusable(cut_text(reply.get("impl_error") or str(reply.get("error", "unknown error")).splitlines()[0]))
            self._description = _checked_description(reply.get("describe"), self.impl_spec)
        return self._description

    def conversion(self, case: LayerCase) -> Optional[tuple[str, str]]:
        """How the conversion stage builds and converts ``case``'s layer (``cases.conversion_for``, from
        the dtypes the impl declares for the linear family); ``None``: no other dtype is declared."""
        return conversion_for(case.dtype, self._stage_dtypes())

    def mixed_precision(self, case: LayerCase) -> Optional[tuple[str, str]]:
        """The mixed-precision stage's parameter and compute dtypes for ``case`` (``cases.mixed_precision_for``,
        from the dtypes the impl declares for the linear family); ``None``: it declares no such pair."""
        return mixed_precision_for(case.dtype, self._stage_dtypes())

    def _stage_dtypes(self) -> tuple[str, ...]:
        """The dtypes the conversion and mixed-precision stages choose from: :attr:`judged_dtypes` where a
        grade sets them, else those the impl declares for the linear family."""
        from tpconform.impls.protocol import Capabilities

        return self.judged_dtypes or Capabilities.from_dict(self.describe()["capabilities"]).of("linear").dtypes

    def _group(self, world_size: int):
        """The group for ``world_size``, with the impl already loaded on every rank.

        Loading (importing the library, one-time set-up) gets its own, longer bound, so the
        per-example ``--tp-timeout`` measures the example alone; a load that fails is reported by
        the example that follows."""
        group = self.pool.get(world_size)
        if self.impl_spec not in group.loaded_impls:
            from tpconform.transport.stale_locks import remove_stale_extension_locks

            setup_s = self.describe().get("setup_timeout_s", LOAD_TIMEOUT_S)
            remove_stale_extension_locks()  # a build killed earlier must not hang this one's set-up
            group.request({r: {"cmd": "describe", "impl": self.impl_spec, "setup": True} for r in range(world_size)},
                          timeout_s=max(LOAD_TIMEOUT_S, group.timeout_s, setup_s),
                          what="loading the impl and its set-up", synchronized=False)
            group.loaded_impls.add(self.impl_spec)
        return group

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
            group.close()  # a rank raised mid-collective: the group's state is unknown
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

    def run(self, case: LayerCase, stages: Optional[Sequence[str]] = None,
            while_waiting: Optional[Callable[[CaseTensors], None]] = None, forward_only: bool = False) -> Outcome:
        """Run ``case`` on every rank: build the layer, then the worker ``stages`` (all by default).
        ``while_waiting(tensors)`` runs in this process while the ranks work. ``forward_only``: the layer
        declares no backward (capability ``backward=False``): only the forward stages run, under
        ``torch.no_grad()``."""
        stages = declared_stages(stages, forward_only)
        steps = bool({"train_step", "mixed_precision"} & set(stages))  # the stages that run a training step
        tensors = make_tensors(case, update=steps)
        outcome = Outcome(case, tensors, stages=stages)
        message: dict[str, Any] = {"cmd": "run", "family": "linear", "impl": self.impl_spec, "case": for_workers(case),
                                   "data": tensors.as_dict(), "stages": list(outcome.stages)}
        if forward_only:
            message["forward_only"] = True
        if "conversion" in stages:
            outcome.conversion = self.conversion(case)
            message["conversion"] = outcome.conversion and list(outcome.conversion)
        if "mixed_precision" in stages:
            outcome.mixed_precision = self.mixed_precision(case)
            message["mixed_precision"] = outcome.mixed_precision and list(outcome.mixed_precision)
        messages = {r: message for r in range(case.world_size)}
        sent = [0]
        private_update = steps and case.world_size >= 2
        if case.sharding.sliced_tensor(case) and not outcome.stages:
            messages = {r: build_only(message) for r in range(case.world_size)}  # the shards alone are read
        elif case.sharding.sliced_tensor(case) or private_update:
            # A rank gets only its slice of the input (row, input_is_parallel) or of the upstream grad
            # (column, sharded output), never the whole tensor it could read out of the harness's frames
            # instead of communicating, and only its own slice of the training step's delta (an update
            # no other rank is sent: matching the dense layer after it needs the others' partial
            # results): first the layer is built for its shard shapes alone (sent the weight and bias
            # only), then each rank is sent its slices along the partition those shapes imply.
            first, outcome.crash = self.request(case.world_size, {r: build_only(message)
                                                                  for r in range(case.world_size)}, sent=sent)
            if outcome.crash is not None:
                return outcome
            if any(res.get("construct_failed_ranks") for res in first.values()):
                outcome.ranks = [RankResult.from_wire(first[r]) for r in range(case.world_size)]
                outcome.loopback_bytes = sent[0] if self.traffic is not None else None
                return outcome
            messages = _sliced_messages(case, message, tensors, [first[r] for r in range(case.world_size)])
        results, outcome.crash = self.request(case.world_size, messages,
                                              None if while_waiting is None else lambda: while_waiting(tensors), sent)
        if self.traffic is not None:
            outcome.loopback_bytes = sent[0]
        if outcome.crash is None:
            outcome.ranks = [RankResult.from_wire(results[r]) for r in range(case.world_size)]
        return outcome


def build_only(message: dict) -> dict:
    """``message`` for the round that only builds the layer: the weight and bias, no input, no upstream grad
    (a layer's constructor may keep whatever it is sent for the calls that follow)."""
    data = message["data"]
    return {**message, "stages": [], "data": {"weight": data["weight"], "bias": data["bias"], "x": None,
                                               "grad_out": None}}


def _sliced_messages(case: LayerCase, message: dict, tensors: CaseTensors, shards: list) -> dict[int, dict]:
    def width(res: dict, dim: int) -> int:
        w = res.get("weight_shard")
        return int(w.shape[dim]) if hasattr(w, "shape") and len(w.shape) == 2 else -1

    data = tensors.as_dict()
    key, sharding = case.sharding.sliced_tensor(case), case.sharding
    parts = partition([width(res, sharding.weight_dim) for res in shards], sharding.split_features(case),
                      case.world_size)
    out, start = {}, 0
    update = data.get("update")
    for r, n in enumerate(parts):
        sent = dict(data)
        if key:
            sent[key] = data[key].narrow(-1, start, n).clone()
        if update is not None:
            u = dict(update)
            if key:  # the training step's own input and upstream grad: sliced the same way
                u[key] = update[key].narrow(-1, start, n).clone()
            # the delta: this rank's slice only (the worker adds it to its shards as it is)
            u["delta_weight"] = update["delta_weight"].narrow(sharding.weight_dim, start, n).clone()
            if update["delta_bias"] is not None and sharding.bias_sharded:
                u["delta_bias"] = update["delta_bias"].narrow(0, start, n).clone()
            u["delta_sliced"] = True
            sent["update"] = u
        start += n
        out[r] = {**message, "data": sent, "sliced": key} if key else {**message, "data": sent}
    return out
