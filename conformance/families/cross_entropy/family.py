"""Vocab-parallel cross entropy as a family (the spec: ``verdict``) — added as one folder: its case,
verdict, worker, strategy and likely causes, and nothing outside it but the impl's optional method
``vocab_parallel_cross_entropy`` and its seeded bugs."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from hypothesis import strategies as st
from tpconform.families.causes import close
from tpconform.families.common import ExtensionFamily
from tpconform.families.cross_entropy import verdict
from tpconform.families.cross_entropy.case import CrossEntropyCase
from tpconform.spec.family import Property
from tpconform.spec.violations import Violation
from tpconform.strategies.layers import DTYPES, batch_shapes


@st.composite
def cross_entropy_cases(draw, *, world_sizes: Sequence[int] = tuple(range(1, 9)), dtypes: Sequence[str] = DTYPES):
    """A vocabulary of 1-6 columns per rank; targets of 0-2 dims; logits of spread 1 or 30 (large enough
    that exponentials without the max subtracted lose the small terms)."""
    ws = draw(st.sampled_from(sorted(world_sizes)), label="world_size")
    return CrossEntropyCase(
        world_size=ws,
        vocab=ws * draw(st.integers(1, 6), label="vocab per rank"),
        batch_shape=draw(batch_shapes(max_dims=2, max_side=5), label="targets shape"),
        dtype=draw(st.sampled_from(list(dtypes)), label="dtype"),
        scale=draw(st.sampled_from([1.0, 30.0]), label="scale"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )


def _loss_with_local_maxes(ev) -> torch.Tensor:
    """The loss when each rank shifts its logits by its own max (not the all-reduced one) and the
    shifted sums of exponentials and target logits are then all-reduced as if the shift were shared."""
    z, t, c = ev.tensors.logits.double(), ev.tensors.target, ev.case
    total = torch.zeros(z.shape[:-1], dtype=torch.float64)
    predicted = torch.zeros(z.shape[:-1], dtype=torch.float64)
    for q in range(c.world_size):
        cols = c.columns(q)
        shifted = z[..., cols] - z[..., cols].amax(-1, keepdim=True)
        total += shifted.exp().sum(-1)
        mine = (t >= cols.start) & (t < cols.stop)
        local = (t - cols.start).clamp(0, cols.stop - cols.start - 1)
        predicted += torch.where(mine, shifted.gather(-1, local.unsqueeze(-1)).squeeze(-1), 0.0)
    return total.log() - predicted


def likely_cause(ev, v: Violation) -> Optional[str]:
    if v.property == "cross_entropy_leaves_its_logits_untouched":
        return ("the logits are shifted by their max in place (logits -= max): the caller's logits, perhaps saved "
                "for backward by the layer that made them, change under it")
    r, c = v.rank, ev.case
    if r is None or r >= len(ev.ranks) or c.world_size < 2 or ev.tensors.logits.numel() == 0:
        return None
    if v.quantity == "loss" and close(ev.ranks[r].get("output"), _loss_with_local_maxes(ev)):
        return ("each rank shifts its logits by its own max: the max must be all-reduced (MAX) first, so that the "
                "exponentials summed over the ranks share one shift")
    if v.quantity == "logit grad":
        grad, t = ev.ranks[r].get("input_grad"), ev.tensors.target
        cols = c.columns(r)
        mine = (t >= cols.start) & (t < cols.stop)
        if grad is not None and bool((~mine).any()):
            return ("the one-hot of the target is subtracted on every rank (at a clamped column) instead of only on the "
                    "rank that holds the target's column")
    return None


class CrossEntropyFamily(ExtensionFamily):
    name = "cross_entropy"
    title = "vocab-parallel cross entropy"
    case_type = CrossEntropyCase
    offered_by = "vocab_parallel_cross_entropy"
    verdict = verdict
    properties = {name: Property(name, fn, self_reported=name in verdict.SELF_REPORTED,
                                 reads_backward=name != "cross_entropy_loss_matches_the_dense_loss")
                  for name, fn in verdict.CROSS_ENTROPY_SPEC.items()}

    def cases(self, suite, variant):
        return cross_entropy_cases(world_sizes=suite.world_sizes, dtypes=suite._dtypes(self.name))

    def likely_cause(self, ev, v):
        return likely_cause(ev, v)


FAMILY = CrossEntropyFamily()
