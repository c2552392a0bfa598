"""Run one layer case of one impl on a persistent group; return what every rank reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from conformance.cases import STAGES, CaseTensors, LayerCase, make_tensors
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
    stages: tuple = STAGES  # what the workers ran after building the layer (conformance.cases.STAGES)

    @property
    def construct_failed(self) -> bool:
        return bool(self.ranks) and "construct_failed_ranks" in self.ranks[0]


_TENSOR_KEYS = ("weight_shard", "bias_shard", "output", "input_grad", "weight_grad", "bias_grad", "second_output",
                "updated_weight_shard", "updated_bias_shard", "step_output", "step_input_grad", "step_weight_grad",
                "step_bias_grad")
_BOOL_KEYS = ("input_modified", "grad_modified")
_STR_KEYS = ("construct_error", "upstream_grad_replaced", "train_step_error")


def malformed(result: Any) -> Optional[str]:
    """Why a rank's result is not what a worker sends (a candidate may forge replies), or ``None``.

    The wire format already guarantees plain data; this checks the known fields' types so a forged
    reply is a clean failure, never a crash of the verdict."""
    import torch

    if not isinstance(result, dict):
        return f"the result is a {type(result).__name__}, not a dict"
    for key in _TENSOR_KEYS:
        if result.get(key) is not None and not isinstance(result[key], torch.Tensor):
            return f"{key} is a {type(result[key]).__name__}, not a tensor"
    for key in _BOOL_KEYS:
        if key in result and not isinstance(result[key], bool):
            return f"{key} is a {type(result[key]).__name__}, not a bool"
    for key in _STR_KEYS:
        if key in result and not isinstance(result[key], str):
            return f"{key} is a {type(result[key]).__name__}, not a str"
    failed = result.get("construct_failed_ranks")
    if failed is not None and not (isinstance(failed, list) and all(type(r) is int for r in failed)):
        return "construct_failed_ranks is not a list of ints"
    return None


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
    from impls.protocol import Capabilities

    try:
        Capabilities.from_dict(d["capabilities"])
        if not isinstance(d.get("name"), str):
            raise TypeError("name is not a str")
    except Exception as exc:
        raise ImplUnusable(f"--impl={spec}: its description is malformed: {type(exc).__name__}: {exc}") from None
    return d


LOAD_TIMEOUT_S = 120.0  # importing a library on every rank of a fresh group (megatron at 8 ranks: ~30 s)


class Runner:
    """Drives one impl (by its ``--impl`` spec) over a pool of process groups."""

    def __init__(self, impl_spec: str, pool: Optional[GroupPool] = None):
        self.impl_spec = impl_spec
        self.pool = pool or GroupPool()
        self._description: Optional[dict] = None
        self.example_timeout: Optional[tuple[float, str]] = None  # (s, why): instead of --tp-timeout (Suite.bounded)

    def describe(self) -> dict[str, Any]:
        """Name, version and capabilities, as the impl declares them (loaded in a worker)."""
        if self._description is None:
            try:
                group = self.pool.get(getattr(self.pool, "describe_world_size", 1))  # torchrun: its one world
                reply = group.request({0: {"cmd": "describe", "impl": self.impl_spec}}, what="loading the impl")[0]
            except GroupFailure as exc:
                raise ImplUnusable(f"--impl={self.impl_spec}: loading it crashed its worker: "
                                   f"{str(exc).splitlines()[0]}") from None
            if not reply.get("ok"):
                raise ImplUnusable(reply.get("impl_error") or reply.get("error", "unknown error").splitlines()[0])
            self._description = _checked_description(reply.get("describe"), self.impl_spec)
        return self._description

    def _group(self, world_size: int):
        """The group for ``world_size``, with the impl already loaded on every rank.

        Loading (importing the library, one-time set-up) gets its own, longer bound, so the
        per-example ``--tp-timeout`` measures the example alone; a load that fails is reported by
        the example that follows."""
        group = self.pool.get(world_size)
        if self.impl_spec not in group.loaded_impls:
            group.request({r: {"cmd": "describe", "impl": self.impl_spec} for r in range(world_size)},
                          timeout_s=max(LOAD_TIMEOUT_S, group.timeout_s), what="loading the impl",
                          synchronized=False)
            group.loaded_impls.add(self.impl_spec)
        return group

    def request(self, world_size: int, messages: dict[int, dict],
                while_waiting: Optional[Callable[[], None]] = None) -> tuple[dict[int, Any], Optional[str]]:
        """Send one message per rank (each may differ), run ``while_waiting`` while the ranks work,
        and collect every rank's ``result``: ``(results, None)``, or ``({}, why)`` when the example
        did not complete on every rank."""
        bound = self.example_timeout
        try:
            group = self._group(world_size)
            replies = group.request(messages, timeout_s=bound[0] if bound else None, while_waiting=while_waiting)
        except GroupFailure as exc:
            return {}, (f"(example bounded at {bound[0]:g} s by {bound[1]}, not --tp-timeout) " if bound else "") + str(exc)
        errors = [(r, rep) for r, rep in sorted(replies.items()) if not rep.get("ok")]
        if errors:
            group.close()  # a rank raised mid-collective: the group's state is unknown
            return {}, "\n".join(f"rank {r} raised: {rep.get('impl_error') or rep.get('error')}" for r, rep in errors)
        results, bad = _results(replies)
        if bad:
            group.close(graceful=False)
            return {}, bad
        raised = [isinstance(res, dict) and "train_step_error" in res for res in results.values()]
        if any(raised) and not all(raised):
            group.close()  # the training step raised on some ranks only: the group's state is unknown
        return results, None

    def run(self, case: LayerCase, stages: Optional[Sequence[str]] = None,
            while_waiting: Optional[Callable[[CaseTensors], None]] = None) -> Outcome:
        """Run ``case`` on every rank: build the layer, then the worker ``stages`` (all by default).
        ``while_waiting(tensors)`` runs in this process while the ranks work."""
        stages = tuple(STAGES if stages is None else stages)
        tensors = make_tensors(case, update="train_step" in stages)
        outcome = Outcome(case, tensors, stages=stages)
        message = {"cmd": "run", "impl": self.impl_spec, "case": case.as_dict(), "data": tensors.as_dict(),
                   "stages": list(outcome.stages)}
        results, outcome.crash = self.request(case.world_size, {r: message for r in range(case.world_size)},
                                              None if while_waiting is None else lambda: while_waiting(tensors))
        if outcome.crash is None:
            outcome.ranks = [results[r] for r in range(case.world_size)]
        return outcome
