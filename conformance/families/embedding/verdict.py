"""Vocab-parallel embedding (verdict side): the table's rows sharded over the ranks.

On ``world_size`` ranks, an embedding built from the table ``W [vocab, dim]`` must:

1. **output**: return the dense lookup ``W[ids]`` on every rank, for ids anywhere in the
   vocabulary — each rank holds some rows, masks the ids outside them, and the partial lookups are
   all-reduced (only one rank contributes each vector, so this is exact up to the bound);
2. **weight grad**: give each table shard (its rows, in rank order, rebuilding ``W``) the matching
   rows of the dense grad — the upstream grad summed into the rows of the ids that were looked up,
   and nothing into the rows of ids another rank owns.

Tolerances: :func:`conformance.spec.tolerance.bound` on the magnitude of each sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from conformance.families.common import (
    compare_on_rank,
    not_offered,
    preconditions,
    rank_slice,
    run_on_every_rank,
)
from conformance.families.embedding.case import EmbeddingCase
from conformance.spec import tolerance as tol
from conformance.spec.cases import partition
from conformance.spec.violations import Violation


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

    def rows(self, r: int) -> slice:
        """Rank ``r``'s rows of the table, read from the shard shapes (``tensor_split`` if they do not
        form a partition)."""
        sizes = [int(res["weight_shard"].shape[0]) if res.get("weight_shard") is not None
                 and res["weight_shard"].dim() == 2 else -1 for res in self.ranks]
        return rank_slice(partition(sizes, self.case.vocab, self.case.world_size), r)


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
    name, t, c = "embedding_weight_grad_matches_the_dense_lookup", ev.tensors, ev.case
    expected = _dense_grad(t, t.grad_out)
    bound = tol.bound(_dense_grad(t, t.grad_out.abs()), max(t.ids.numel(), 1), c.torch_dtype, c.world_size)
    out = []
    for r, res in enumerate(ev.ranks):
        rows = ev.rows(r)
        shard = res.get("weight_shard")
        if shard is None or shard.shape != t.weight[rows].shape or not torch.equal(shard, t.weight[rows]):
            out.append(Violation(name, f"rank {r}'s table shard is not rows {rows.start}:{rows.stop} of the table",
                                 r, "weight shard"))
            continue
        out += compare_on_rank(name, r, res.get("weight_grad"), expected[rows], bound[rows], "weight grad")
    return out


def _construction_failed(ev: EmbeddingEvidence, failed: list[int]) -> str:
    return f"construction raised on rank(s) {failed}: " + "; ".join(res.get("construct_error") or "" for res in ev.ranks)


def evidence(suite, case: EmbeddingCase) -> Optional[EmbeddingEvidence]:
    """Run ``case``; ``None`` when the impl offers no vocab-parallel embedding."""
    t = make_embedding_tensors(case)
    ranks, crash = run_on_every_rank(suite, case, "run_embedding",
                                     {"weight": t.weight, "ids": t.ids, "grad_out": t.grad_out})
    if not_offered(ranks):
        return None
    return EmbeddingEvidence(case, t, ranks, crash, suite.capabilities.uneven_shards)


def violations(suite, case: EmbeddingCase, prop: str, ev: Optional[EmbeddingEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: _construction_failed(ev, failed),
                        rejection_declared=case.uneven and not ev.uneven_shards_supported)
    return pre if pre is not None else EMBEDDING_SPEC[prop](ev)
