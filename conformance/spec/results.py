"""The type check of every rank's reply, whatever its family: ``Runner.request`` checks each known field's
type (:func:`malformed`: a candidate may forge replies, and a wrong type is a clean failure, never a crash
of the verdict) before anything reads it (the linear family then reads it as a typed record,
:class:`tpconform.families.linear.results.RankResult`)."""

from __future__ import annotations

from typing import Any, Optional

import torch

_TENSORS = ("weight_shard", "bias_shard", "output", "input_grad", "weight_grad", "bias_grad", "second_output",
            "updated_weight_shard", "updated_bias_shard", "step_output", "step_input_grad", "step_weight_grad",
            "step_bias_grad", *(f"usage_{k}" for k in (
                "weight_grad", "bias_grad",
                "frozen_weight_grad", "frozen_bias_grad", "inference_output", "after_inference_output",
                "after_inference_input_grad", "after_inference_weight_grad", "after_inference_bias_grad",
                "in_order_weight_grad", "in_order_bias_grad",
                "no_grad_output")),
            "built_weight_shard", "built_bias_shard",
            *(f"{prefix}_{k}" for prefix in ("converted", "reloaded") for k in (
                "weight_shard", "bias_shard", "output", "input_grad", "weight_grad", "bias_grad")),
            *(f"mixed_{k}" for k in ("output", "input_grad", "weight_grad", "bias_grad", "updated_weight_shard",
                                     "updated_bias_shard", "step_output", "step_input_grad", "step_weight_grad",
                                     "step_bias_grad")))
# one entry per micro-batch (a tensor, or None where the impl gave none)
_TENSOR_LISTS = ("usage_outputs", "usage_input_grads", "usage_in_order_input_grads")
_BOOLS = ("input_modified", "grad_modified")
_STRS = ("construct_error", "upstream_grad_replaced", "train_step_error", "grads_finalized_by", "usage_error",
         "conversion_error", "state_dict_error", "mixed_precision_error")


def malformed(result: Any) -> Optional[str]:
    """Why a rank's result is not what a worker sends, or ``None`` (the wire format already
    guarantees plain data; this checks the known fields' types)."""
    if not isinstance(result, dict):
        return f"the result is a {type(result).__name__}, not a dict"
    for key in _TENSORS:
        if result.get(key) is not None and not isinstance(result[key], torch.Tensor):
            return f"{key} is a {type(result[key]).__name__}, not a tensor"
    for key in _TENSOR_LISTS:
        value = result.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(t is None or isinstance(t, torch.Tensor) for t in value)):
            return f"{key} is not a list of tensors"
    for key in _BOOLS:
        if key in result and not isinstance(result[key], bool):
            return f"{key} is a {type(result[key]).__name__}, not a bool"
    for key in _STRS:
        if key in result and not isinstance(result[key], str):
            return f"{key} is a {type(result[key]).__name__}, not a str"
    failed = result.get("construct_failed_ranks")
    if failed is not None and not (isinstance(failed, list) and all(type(r) is int for r in failed)):
        return "construct_failed_ranks is not a list of ints"
    for key, kind in (("rank", int), ("collective_elements", int)):
        if result.get(key) is not None and type(result[key]) is not kind:
            return f"{key} is a {type(result[key]).__name__}, not an int"
    calls = result.get("collectives")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(c, str) for c in calls)):
        return "collectives is not a list of str"
    return None
