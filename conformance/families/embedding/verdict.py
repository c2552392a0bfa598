"""Vocab-parallel embedding (verdict side): the table's rows sharded over the ranks.

On ``world_size`` ranks, an embedding built from the table ``W [vocab, dim]`` must:

1. **output**: return the dense lookup ``W[ids]`` on every rank, for ids anywhere in the
   vocabulary — each rank holds some rows, masks the ids outside them, and the partial lookups are
   all-reduced (only one rank contributes each vector, so this is exact up to the bound);
2. **weight grad**: give each table shard (its rows, in rank order, rebuilding ``W``) the matching
   rows of the dense grad — the upstream grad summed into the rows of the ids that were looked up,
   and nothing into the rows of ids another rank owns. A layer that declares ``padded_shards``
   (the table padded, then split: any sizes) holds the real rows followed by padding rows, in rank
   order; the padding rows must get no gradient at all.

Tolerances: :func:`tpconform.spec.tolerance.bound` on the magnitude of each sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tpconform.families.common import (
    compare_on_rank,
    not_offered,
    preconditions,
    rank_slice,
    run_on_every_rank,
)
from tpconform.families.embedding.case import EmbeddingCase
from tpconform.spec import tolerance as tol
from tpconform.spec.partition import partition
from tpconform.spec.violations import Violation, construction_raised


@dataclass
class EmbeddingTensors:
    weight: torch.Tensor  # [vocab, dim]
    ids: torch.Tensor  # int64, batch_shape
    grad_out: torch.Tensor  # [*batch_shape, dim]


def make_embedding_tensors(case: EmbeddingCase) -> EmbeddingTensors:
    gen = torch.Generator().manual_seed(case.seed)
    dt = case.torch_dtype
    return EmbeddingTensors(
        weight=torch.randn(case.vocab, case.dim, generator=gen, dtype=torch.float64).to(dt),
        ids=torch.randint(0, case.vocab, case.batch_shape, generator=gen, dtype=torch.int64),
        grad_out=torch.randn(*case.batch_shape, case.dim, generator=gen, dtype=torch.float64).to(dt),
    )


def _dense_grad(t: EmbeddingTensors, values: torch.Tensor) -> torch.Tensor:
    """``values`` (``[*batch, dim]``) summed into the rows of their ids, in float64."""
    out = torch.zeros(t.weight.shape, dtype=torch.float64)
    return out.index_add_(0, t.ids.reshape(-1), values.double().reshape(-1, t.weight.shape[1]))


@dataclass
class EmbeddingEvidence:
    case: EmbeddingCase
    tensors: EmbeddingTensors
    ranks: list[dict]
    crash: Optional[str]
    uneven_shards_supported: bool = True
    padded_shards_declared: bool = False  # the capability padded_shards, for this family

    def held(self) -> list[int]:
        """How many table rows each rank's shard holds (-1: no 2-D shard came back)."""
        return [int(res["weight_shard"].shape[0]) if res.get("weight_shard") is not None
                and res["weight_shard"].dim() == 2 else -1 for res in self.ranks]

    def padded(self) -> bool:
        """Whether the shards are read as padded: declared, and holding more rows than the vocabulary."""
        held = self.held()
        return self.padded_shards_declared and min(held, default=-1) >= 0 and sum(held) > self.case.vocab

    def rows(self, r: int) -> slice:
        """The vocabulary rows rank ``r``'s shard holds: read from the shard shapes (``tensor_split`` if
        they do not form a partition); padded shards hold the padded table's rows in rank order, of
        which those past the vocabulary are padding."""
        held, vocab = self.held(), self.case.vocab
        if self.padded():
            start = sum(held[:r])
            return slice(min(start, vocab), min(start + held[r], vocab))
        return rank_slice(partition(held, vocab, self.case.world_size), r)

    def padding(self, r: int) -> int:
        """How many padding rows rank ``r``'s shard ends in (0 unless :meth:`padded`)."""
        rows = self.rows(r)
        return self.held()[r] - (rows.stop - rows.start) if self.padded() else 0


EMBEDDING_SPEC: dict = {}


def embedding_property(fn):
    EMBEDDING_SPEC[fn.__name__] = fn
    return fn


@embedding_property
def embedding_output_matches_the_dense_lookup(ev: EmbeddingEvidence) -> list[Violation]:
    name, t, c = "embedding_output_matches_the_dense_lookup", ev.tensors, ev.case
    expected = t.weight.double()[t.ids]
    bound = tol.bound(expected.abs(), 1, c.torch_dtype, c.world_size)
    return [v for r, res in enumerate(ev.ranks)
            for v in compare_on_rank(name, r, res.get("output"), expected, bound, "output")]


@embedding_property
def embedding_weight_grad_matches_the_dense_lookup(ev: EmbeddingEvidence) -> list[Violation]:
    """Each shard's vocabulary rows get the dense grad's rows; a padded shard's padding rows get none."""
    name, t, c = "embedding_weight_grad_matches_the_dense_lookup", ev.tensors, ev.case
    expected = _dense_grad(t, t.grad_out)
    bound = tol.bound(_dense_grad(t, t.grad_out.abs()), max(t.ids.numel(), 1), c.torch_dtype, c.world_size)
    out = []
    for r, res in enumerate(ev.ranks):
        rows, pad = ev.rows(r), ev.padding(r)
        real = rows.stop - rows.start
        shard, grad = res.get("weight_shard"), res.get("weight_grad")
        if shard is None or shard.dim() != 2 or shard.shape[1] != c.dim or shard.shape[0] != real + pad \
                or not torch.equal(shard[:real], t.weight[rows]):
            out.append(Violation(name, _shard_problem(ev, r, rows), r, "weight shard"))
            continue
        if grad is None and real == 0:
            continue  # no vocabulary row here: no gradient is the dense one (and none reached its padding)
        if pad and isinstance(grad, torch.Tensor) and grad.shape != shard.shape:
            out.append(Violation(name, f"rank {r}'s weight grad has shape {list(grad.shape)}, its shard (padding "
                                       f"included) {list(shard.shape)}", r, "weight grad"))
            continue
        if pad and isinstance(grad, torch.Tensor):
            leaked = grad[real:].double().abs()
            if bool((leaked != 0).any()):
                out.append(Violation(name, f"rank {r}'s {pad} padding row(s) (past the vocabulary of {c.vocab}) got "
                                           f"gradient, max |grad| {leaked.max().item():.3g}: padding rows must get none "
                                           "(the dense model has no such rows; their grad changes the grad norm)",
                                     r, "padding grad"))
            grad = grad[:real]
        out += compare_on_rank(name, r, grad, expected[rows], bound[rows], "weight grad")
    return out


def _shard_problem(ev: EmbeddingEvidence, r: int, rows: slice) -> str:
    held, vocab = ev.held(), ev.case.vocab
    what = f"rank {r}'s table shard is not rows {rows.start}:{rows.stop} of the table"
    if min(held, default=-1) >= 0 and sum(held) > vocab:
        if ev.padded_shards_declared:
            return what + f" followed by {ev.padding(r)} padding row(s) (the shards hold {sum(held)} rows in all)"
        return (what + f": the shards hold {sum(held)} rows for a vocabulary of {vocab}; a layer that pads its "
                "table must declare it (capability padded_shards, for the embedding alone: "
                "families={'embedding': {'padded_shards': True}})")
    return what


def _construction_failed(ev: EmbeddingEvidence, failed: list[int]) -> str:
    return construction_raised(failed, {r: res.get("construct_error") for r, res in enumerate(ev.ranks)}, ":")


def evidence(suite, case: EmbeddingCase) -> Optional[EmbeddingEvidence]:
    """Run ``case``; ``None`` when the impl offers no vocab-parallel embedding."""
    t = make_embedding_tensors(case)
    ranks, crash = run_on_every_rank(suite, case, "run_embedding",
                                     {"weight": t.weight, "ids": t.ids, "grad_out": t.grad_out})
    if not_offered(ranks):
        return None
    caps = suite.capabilities.of("embedding")
    return EmbeddingEvidence(case, t, ranks, crash, caps.uneven_shards, caps.padded_shards)


def violations(suite, case: EmbeddingCase, prop: str, ev: Optional[EmbeddingEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: _construction_failed(ev, failed),
                        rejection_declared=case.uneven and not ev.uneven_shards_supported)
    return pre if pre is not None else EMBEDDING_SPEC[prop](ev)
