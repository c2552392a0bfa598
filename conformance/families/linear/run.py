"""How one linear example runs: the exact tensors, each rank's message (a rank holding a sliced input or
upstream grad is sent only its slice), and what every rank reported (:class:`Outcome`), through the
engine's :class:`~tpconform.engine.runner.Runner` (which loads the impl and checks every reply)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

from tpconform.families.linear.case import STAGES, LayerCase, declared_stages
from tpconform.families.linear.results import RankResult
from tpconform.families.linear.tensors import CaseTensors, conversion_for, make_tensors, mixed_precision_for
from tpconform.spec.partition import partition
from tpconform.spec.plain_case import for_workers


class Runner(Protocol):
    """What an example needs of the engine's runner (``tpconform.engine.runner.Runner``): the impl's
    description, and one request to every rank of a group, with every reply checked."""

    impl_spec: str
    traffic: Optional[Callable[[], int]]  # the loopback's byte count, where one is measured
    judged_dtypes: Optional[tuple[str, ...]]  # the dtypes a grade judges the stages on (None: declared)

    def describe(self) -> dict[str, Any]: ...

    def request(self, world_size: int, messages: dict[int, dict], while_waiting: Optional[Callable[[], None]] = None,
                sent: Optional[list[int]] = None) -> tuple[dict[int, Any], Optional[str]]: ...


NAME = "linear"  # the family's name: its worker commands are found by it (transport/worker.py)


@dataclass
class Outcome:
    """What came back from one example: per-rank results, or why there are none."""

    case: LayerCase
    tensors: CaseTensors
    ranks: list[RankResult] = field(default_factory=list)  # what each rank reported
    crash: Optional[str] = None  # hang / death / exception text, when the example did not complete
    stages: tuple = STAGES  # what the workers ran after building the layer (tpconform.families.linear.case.STAGES)
    # stage "conversion": (build dtype, method) the verdict chose (tensors.conversion_for); None: not run
    conversion: Optional[tuple[str, str]] = None
    # stage "mixed_precision": (parameter dtype, compute dtype) the verdict chose (tensors.mixed_precision_for)
    mixed_precision: Optional[tuple[str, str]] = None
    # bytes the network namespace's loopback carried while the ranks built and ran it, read by this
    # process from the kernel (Runner.traffic); None where no private count exists (outside the sandbox)
    loopback_bytes: Optional[int] = None

    @property
    def construct_failed(self) -> bool:
        return bool(self.ranks) and self.ranks[0].construct_failed


def stage_dtypes(runner: Runner) -> tuple[str, ...]:
    """The dtypes the conversion and mixed-precision stages choose from (``tensors.conversion_for``,
    ``tensors.mixed_precision_for``): the runner's ``judged_dtypes`` where a grade sets them, else those
    the impl declares for this family."""
    from tpconform.impls.protocol import Capabilities

    return runner.judged_dtypes or Capabilities.from_dict(runner.describe()["capabilities"]).of(NAME).dtypes


def run(runner: Runner, case: LayerCase, stages: Optional[Sequence[str]] = None,
        while_waiting: Optional[Callable[[CaseTensors], None]] = None, forward_only: bool = False) -> Outcome:
    """Run ``case`` on every rank of ``runner``'s group for its world size: build the layer, then the worker
    ``stages`` (all by default). ``while_waiting(tensors)`` runs in this process while the ranks work. ``forward_only``: the layer
    declares no backward (capability ``backward=False``): only the forward stages run, under
    ``torch.no_grad()``."""
    stages = declared_stages(stages, forward_only)
    steps = bool({"train_step", "mixed_precision"} & set(stages))  # the stages that run a training step
    tensors = make_tensors(case, update=steps)
    outcome = Outcome(case, tensors, stages=stages)
    message: dict[str, Any] = {"cmd": "run", "family": NAME, "impl": runner.impl_spec, "case": for_workers(case),
                               "data": tensors.as_dict(), "stages": list(outcome.stages)}
    if forward_only:
        message["forward_only"] = True
    if "conversion" in stages:
        outcome.conversion = conversion_for(case.dtype, stage_dtypes(runner))
        message["conversion"] = outcome.conversion and list(outcome.conversion)
    if "mixed_precision" in stages:
        outcome.mixed_precision = mixed_precision_for(case.dtype, stage_dtypes(runner))
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
        first, outcome.crash = runner.request(case.world_size, {r: build_only(message)
                                                              for r in range(case.world_size)}, sent=sent)
        if outcome.crash is not None:
            return outcome
        if any(res.get("construct_failed_ranks") for res in first.values()):
            outcome.ranks = [RankResult.from_wire(first[r]) for r in range(case.world_size)]
            outcome.loopback_bytes = sent[0] if runner.traffic is not None else None
            return outcome
        messages = sliced_messages(case, message, tensors, [first[r] for r in range(case.world_size)])
    results, outcome.crash = runner.request(case.world_size, messages,
                                          None if while_waiting is None else lambda: while_waiting(tensors), sent)
    if runner.traffic is not None:
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


def sliced_messages(case: LayerCase, message: dict, tensors: CaseTensors, shards: list) -> dict[int, dict]:
    """Each rank's ``message`` with only its slice of the sliced tensor (and of the training step's delta),
    along the partition the ranks' reported ``shards`` imply."""
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
