"""What one rank reports for one layer example: a typed record instead of a dict of string keys.

The worker (``families/linear/worker.py``) sends plain data; ``Runner.request`` checks each known
field's type (:func:`tpconform.spec.results.malformed`), :meth:`RankResult.from_wire` reads it, and the
properties read attributes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

import torch


@dataclass(frozen=True)
class RankResult:
    rank: Optional[int] = None
    # the layer as built: its shards (nn.Linear orientation)
    weight_shard: Optional[torch.Tensor] = None
    bias_shard: Optional[torch.Tensor] = None
    # construction: the ranks whose build raised (every rank reports the same list), this rank's error
    construct_failed_ranks: Optional[list[int]] = None
    construct_error: Optional[str] = None
    # forward and backward
    output: Optional[torch.Tensor] = None
    input_grad: Optional[torch.Tensor] = None
    weight_grad: Optional[torch.Tensor] = None
    bias_grad: Optional[torch.Tensor] = None
    upstream_grad_replaced: Optional[str] = None  # the output's shape did not match: zeros were back-propagated
    input_modified: bool = False
    grad_modified: bool = False
    second_output: Optional[torch.Tensor] = None
    grads_finalized_by: Optional[str] = None  # the finalisation the impl declares (impl.finalize_grads), applied
    # communication: floating-point elements this rank sent into collectives, and which calls
    collective_elements: Optional[int] = None
    collectives: list[str] = field(default_factory=list)
    # the training step
    train_step_error: Optional[str] = None
    updated_weight_shard: Optional[torch.Tensor] = None
    updated_bias_shard: Optional[torch.Tensor] = None
    step_output: Optional[torch.Tensor] = None
    step_input_grad: Optional[torch.Tensor] = None
    step_weight_grad: Optional[torch.Tensor] = None
    step_bias_grad: Optional[torch.Tensor] = None
    # the layer as training loops use it (fresh layers; families/linear/worker.py, _usage)
    usage_error: Optional[str] = None  # "protocol: error" for the first protocol that raised
    usage_outputs: Optional[list] = None  # micro-batch i's output (input 2^i x), read after every forward ran
    usage_input_grads: Optional[list] = None  # micro-batch i's input grad (upstream 2^i g), backwards in reverse order
    usage_weight_grad: Optional[torch.Tensor] = None  # accumulated over every backward: sum of grad(2^i x, 2^i g)
    usage_bias_grad: Optional[torch.Tensor] = None
    usage_frozen_weight_grad: Optional[torch.Tensor] = None  # an input that does not require grad
    usage_frozen_bias_grad: Optional[torch.Tensor] = None
    usage_inference_output: Optional[torch.Tensor] = None  # under torch.inference_mode(), first call
    usage_after_inference_output: Optional[torch.Tensor] = None  # the training call after it
    usage_after_inference_input_grad: Optional[torch.Tensor] = None
    usage_after_inference_weight_grad: Optional[torch.Tensor] = None
    usage_after_inference_bias_grad: Optional[torch.Tensor] = None
    usage_in_order_input_grads: Optional[list] = None  # micro-batches again, backwards in the forwards' order
    usage_in_order_weight_grad: Optional[torch.Tensor] = None
    usage_in_order_bias_grad: Optional[torch.Tensor] = None
    usage_no_grad_output: Optional[torch.Tensor] = None  # under torch.no_grad(), on 2x, between the training call's forward and backward
    # the layer as built: the shards as the builder made them, before the suite wrote into them (impl.as_built)
    built_weight_shard: Optional[torch.Tensor] = None
    built_bias_shard: Optional[torch.Tensor] = None
    # the module converted after construction (a fresh layer built in another dtype, then .double() /
    # .half() / .to(dtype)): its shards, and its forward and backward on the example's input
    conversion_error: Optional[str] = None
    converted_weight_shard: Optional[torch.Tensor] = None
    converted_bias_shard: Optional[torch.Tensor] = None
    converted_output: Optional[torch.Tensor] = None
    converted_input_grad: Optional[torch.Tensor] = None
    converted_weight_grad: Optional[torch.Tensor] = None
    converted_bias_grad: Optional[torch.Tensor] = None
    # state_dict() of the layer after the training step, loaded into a fresh layer: its shards, and its
    # forward and backward on the training step's input
    state_dict_error: Optional[str] = None
    reloaded_weight_shard: Optional[torch.Tensor] = None
    reloaded_bias_shard: Optional[torch.Tensor] = None
    reloaded_output: Optional[torch.Tensor] = None
    reloaded_input_grad: Optional[torch.Tensor] = None
    reloaded_weight_grad: Optional[torch.Tensor] = None
    reloaded_bias_grad: Optional[torch.Tensor] = None
    # mixed precision (a fresh layer, float32 parameters, called under torch.autocast on a 16-bit input): its
    # output and grads, then SGD and the delta on its shards, then its output and grads on the step's input
    mixed_precision_error: Optional[str] = None
    mixed_output: Optional[torch.Tensor] = None
    mixed_input_grad: Optional[torch.Tensor] = None
    mixed_weight_grad: Optional[torch.Tensor] = None
    mixed_bias_grad: Optional[torch.Tensor] = None
    mixed_updated_weight_shard: Optional[torch.Tensor] = None
    mixed_updated_bias_shard: Optional[torch.Tensor] = None
    mixed_step_output: Optional[torch.Tensor] = None
    mixed_step_input_grad: Optional[torch.Tensor] = None
    mixed_step_weight_grad: Optional[torch.Tensor] = None
    mixed_step_bias_grad: Optional[torch.Tensor] = None

    @property
    def construct_failed(self) -> bool:
        return self.construct_failed_ranks is not None

    def get(self, key: str, default: Any = None) -> Any:
        """A field by name (for code that reads a field named by a variable)."""
        value = getattr(self, key, None) if key in _FIELDS else None
        return default if value is None else value

    @classmethod
    def from_wire(cls, d: dict) -> "RankResult":
        """The result a worker sent, already checked by :func:`~tpconform.spec.results.malformed` (``Runner.request`` checks
        every reply before anything reads it)."""
        return cls(**{k: v for k, v in d.items() if k in _FIELDS})


_FIELDS = {f.name for f in fields(RankResult)}
