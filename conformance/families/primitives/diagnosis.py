"""Likely causes of a primitive's violations: the classic slips of a ``mappings.py``."""

from __future__ import annotations

from typing import Optional

import torch
from tpconform.families.causes import close
from tpconform.families.primitives.verdict import expected_backward
from tpconform.spec.violations import Violation


def likely_cause(ev, v: Violation) -> Optional[str]:
    c, r = ev.case, v.rank
    if v.property == "primitive_leaves_its_inputs_untouched":
        return (f"{c.primitive} runs its collective in place on the tensor it was handed (e.g. dist.all_reduce(x) "
                "on the caller's x): the caller's tensor, perhaps saved for backward, changes under it; reduce a copy")
    if v.quantity == "output" and c.layout != "contiguous":
        return (f"the input is {c.layout} (not contiguous): a result computed from its storage (a .view, data_ptr, "
                "or a .contiguous() copy that is reduced and then dropped) rather than from its values")
    if r is None or r >= len(ev.ranks):
        return None
    if v.quantity == "input grad" and c.layout != "contiguous" and _misplaced(ev.ranks[r].get("input_grad"),
                                                                             expected_backward(ev, r)[0]):
        return (f"the right values in the wrong places, for a {c.layout} upstream grad: a buffer made with "
                "torch.empty_like (which keeps a non-contiguous layout) filled in row-major order, as a collective "
                "writes it (torch's dist.nn all_gather backward on Gloo does: its scatter into such buffers); "
                "receive into torch.empty(size) or make the grad contiguous first")
    if c.world_size < 2:
        return None
    res, xs, gs = ev.ranks[r], ev.tensors.xs, ev.tensors.gs
    if v.quantity == "output" and c.primitive == "reduce_from" and close(res.get("output"), xs[r].double()):
        return "each rank returns its own input: reduce-from's forward does not all-reduce"
    if v.quantity == "input grad":
        got = res.get("input_grad")
        if c.primitive == "copy_to" and close(got, gs[r].double()):
            return "each rank returns its own upstream grad: copy-to's backward does not all-reduce"
        if c.primitive == "scatter_to" and got is not None and got.shape == gs[r].shape:
            s = ev.scatter_slices()[r]
            outside, expected_outside = got.double().clone(), gs[r].double().clone()
            outside[..., s] = 0
            expected_outside[..., s] = 0
            own = got[..., s]
            own_right = own.numel() == 0 or close(own, gs[r].double()[..., s])
            if own_right and not bool(outside.ne(0).any()) and bool(expected_outside.ne(0).any()):
                return ("only this rank's slice of the grad comes back (zeros elsewhere): scatter-to's backward must "
                        "all-gather the grad slices of every rank")
    return None


def _misplaced(got, expected: torch.Tensor) -> bool:
    """``got`` holds ``expected``'s values (within a small slack) but not in their places."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape or expected.numel() < 2:
        return False
    return close(got.double().flatten().sort().values, expected.double().flatten().sort().values) and not close(
        got, expected)
