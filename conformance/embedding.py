"""Vocab-parallel embedding (verdict side): the table's rows sharded over the ranks.

On ``world_size`` ranks, an embedding built from the table ``W [vocab, dim]`` must:

1. **output**: return the dense lookup ``W[ids]`` on every rank, for ids anywhere in the
   vocabulary — each rank holds some rows, masks the ids outside them, and the partial lookups are
   all-reduced (only one rank contributes each vector, so this is exact up to the bound);
2. **weight grad**: give each table shard (its rows, in rank order, rebuilding ``W``) the matching
   rows of the dense grad — the upstream grad summed into the rows of the ids that were looked up,
   and nothing into the rows of ids another rank owns.

Tolerances: :func:`conformance.tolerance.bound` on the magnitude of each sum.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch

from conformance import tolerance as tol
from conformance.compare import compare
from conformance.properties import Violation


@dataclass(frozen=True)
class EmbeddingCase:
    world_size: int
    vocab: int
    dim: int
    batch_shape: tuple[int, ...]  # the shape of the ids
    dtype: str
    seed: int = 0

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def uneven(self) -> bool:
        return self.vocab % self.world_size != 0

    def describe(self) -> str:
        return (f"vocab-parallel embedding, world_size={self.world_size}, vocab={self.vocab}, dim={self.dim}, "
                f"ids shape {list(self.batch_shape)}, dtype={self.dtype}, seed={self.seed}")

    def token(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.as_dict().items())

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["batch_shape"] = list(self.batch_shape)
        return d


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
        if min(sizes) < 0 or sum(sizes) != self.case.vocab:
            sizes = [len(s) for s in torch.tensor_split(torch.arange(self.case.vocab), self.case.world_size)]
        return slice(sum(sizes[:r]), sum(sizes[: r + 1]))


EMBEDDING_SPEC: dict = {}


def embedding_property(fn):
    EMBEDDING_SPEC[fn.__name__] = fn
    return fn


@embedding_property
def embedding_output_matches_the_dense_lookup(ev: EmbeddingEvidence) -> list[Violation]:
    name, t, c = "embedding_output_matches_the_dense_lookup", ev.tensors, ev.case
    expected = t.weight.double()[t.ids]
    bound = tol.bound(expected.abs(), 1, c.torch_dtype, c.world_size)
    out = []
    for r, res in enumerate(ev.ranks):
        m = compare(res.get("output"), expected, bound, f"rank {r} output")
        if m:
            out.append(Violation(name, str(m), r, "output", m))
    return out


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
        m = compare(res.get("weight_grad"), expected[rows], bound[rows], f"rank {r} weight grad")
        if m:
            out.append(Violation(name, str(m), r, "weight grad", m))
    return out


def evidence(suite, case: EmbeddingCase) -> Optional[EmbeddingEvidence]:
    """Run ``case``; ``None`` when the impl offers no vocab-parallel embedding."""
    t = make_embedding_tensors(case)
    message = {"cmd": "run_embedding", "impl": suite.impl_spec, "case": case.as_dict(),
               "data": {"weight": t.weight, "ids": t.ids, "grad_out": t.grad_out}}
    results, crash = suite.runner.request(case.world_size, {r: message for r in range(case.world_size)})
    suite.examples += 1
    if not crash and results[0].get("not_provided"):
        return None
    ranks = [results[r] for r in range(case.world_size)] if not crash else []
    return EmbeddingEvidence(case, t, ranks, crash, suite.capabilities.uneven_shards)


def violations(suite, case: EmbeddingCase, prop: str, ev: Optional[EmbeddingEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    if ev is None:
        return []
    if ev.crash:
        return [Violation(prop, f"the example did not complete: {ev.crash}", None, "run")]
    failed = ev.ranks[0].get("construct_failed_ranks")
    if failed is not None:
        if case.uneven and not ev.uneven_shards_supported and len(failed) == case.world_size:
            return []  # declared: a vocabulary that does not divide is rejected at construction
        return [Violation(prop, f"construction raised on rank(s) {failed}: "
                                + "; ".join(res.get("construct_error") or "" for res in ev.ranks), None,
                          "construction")]
    return EMBEDDING_SPEC[prop](ev)


def check(suite, case: EmbeddingCase, props: Sequence[str]) -> None:
    ev = evidence(suite, case)
    if ev is None:
        import pytest

        pytest.skip(f"{suite.impl_spec} offers no vocab_parallel_embedding() (optional)")
    lines = []
    for prop in props:
        found = violations(suite, case, prop, ev)
        if found:
            lines.append(f"property violated: {prop.replace('_', ' ')}")
            lines += [f"  - {v.message}" for v in found[:8]]
    if lines:
        raise AssertionError("\n".join([f"case: {case.describe()}", *lines]))


def cases(suite):
    from strategies.embedding import embedding_cases

    return embedding_cases(world_sizes=suite.world_sizes, dtypes=suite._dtypes())
