"""Beyond one layer: the tensor-parallel MLP, as real models use the two layers (verdict side).

``column(gather_output=False) → φ → row(input_is_parallel=True)`` on ``world_size`` ranks must
compute the dense two-layer MLP ``y = φ(x W1ᵀ + b1) W2ᵀ + b2``:

1. **output**: every rank returns the dense output, within the propagated bound
   (:mod:`tpconform.families.mlp.bounds`);
2. **input grad**: every rank's input grad is the dense one;
3. **parameter grads**: each rank's shards of ``W1``/``b1`` (rows) and ``W2`` (columns) get the
   matching slices of the dense grads, and the whole ``b2`` its dense grad;
4. **one all-reduce**: the forward runs exactly one collective, an all-reduce (the row layer's);
   the column's sharded output feeds the row layer's sliced input with no communication between.
   (A world of one rank, or an empty output, may skip it.)

The activation φ is applied by the suite (in the workers), so the composition checks that the two
layers agree on the partition of the hidden dim — each layer alone may conform with a different one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tpconform.families.common import (
    compare_on_rank,
    preconditions,
    rank_slice,
    run_on_every_rank,
)
from tpconform.families.mlp.bounds import mlp_bounds
from tpconform.families.mlp.case import MLPCase
from tpconform.spec.partition import partition
from tpconform.spec.violations import Violation, construction_raised


@dataclass
class MLPTensors:
    w1: torch.Tensor  # [hidden, in]
    b1: Optional[torch.Tensor]  # [hidden]
    w2: torch.Tensor  # [in, hidden]
    b2: Optional[torch.Tensor]  # [in]
    x: torch.Tensor  # [*batch, in]
    grad_out: torch.Tensor  # [*batch, in]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_mlp_tensors(case: MLPCase) -> MLPTensors:
    """Exact weights, non-zero biases, input and a random upstream grad, rounded to the dtype."""
    gen = torch.Generator().manual_seed(case.seed)
    dt = case.torch_dtype

    def normal(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dt)

    def bias(n: int) -> Optional[torch.Tensor]:
        if not case.bias:
            return None
        sign = torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1
        return ((0.5 + torch.rand(n, generator=gen, dtype=torch.float64)) * sign).to(dt)

    d, h = case.in_features, case.hidden
    return MLPTensors(w1=normal(h, d, scale=d**-0.5), b1=bias(h), w2=normal(d, h, scale=h**-0.5), b2=bias(d),
                      x=normal(*case.batch_shape, d, scale=case.scale), grad_out=normal(*case.batch_shape, d))


@dataclass
class DenseMLP:
    h: torch.Tensor
    a: torch.Tensor
    output: torch.Tensor
    ga: torch.Tensor  # grad of the activation's output
    gh: torch.Tensor  # grad of the pre-activation
    input_grad: torch.Tensor
    w1_grad: torch.Tensor
    b1_grad: Optional[torch.Tensor]
    w2_grad: torch.Tensor
    b2_grad: Optional[torch.Tensor]


def dense_mlp(t: MLPTensors, activation: str) -> DenseMLP:
    """The dense MLP, forward and backward, in float64 from the exact inputs."""
    leaf = lambda v: None if v is None else v.detach().double().requires_grad_(True)  # noqa: E731  (not t's own)
    w1, b1, w2, b2, x = leaf(t.w1), leaf(t.b1), leaf(t.w2), leaf(t.b2), leaf(t.x)
    phi = {"relu": torch.relu, "gelu": torch.nn.functional.gelu}[activation]
    h = torch.nn.functional.linear(x, w1, b1)
    h.retain_grad()
    a = phi(h)
    a.retain_grad()
    y = torch.nn.functional.linear(a, w2, b2)
    y.backward(t.grad_out.double())
    grad = lambda v: None if v is None else v.grad  # noqa: E731
    return DenseMLP(h=h.detach(), a=a.detach(), output=y.detach(), ga=a.grad, gh=h.grad, input_grad=x.grad,
                    w1_grad=w1.grad, b1_grad=grad(b1), w2_grad=w2.grad, b2_grad=grad(b2))


@dataclass
class MLPEvidence:
    case: MLPCase
    tensors: MLPTensors
    ranks: list[dict]
    crash: Optional[str]
    dense: DenseMLP
    bounds: dict[str, torch.Tensor]
    uneven_shards_supported: bool = True

    def partition(self, key: str, dim: int) -> list[int]:
        """Each rank's share of the hidden dim, read from its ``key`` shard's shape along ``dim``."""
        sizes = []
        for res in self.ranks:
            w = res.get(key)
            sizes.append(int(w.shape[dim]) if w is not None and w.dim() == 2 else -1)
        return partition(sizes, self.case.hidden, self.case.world_size)

    def hidden_slice(self, key: str, dim: int, rank: int) -> slice:
        return rank_slice(self.partition(key, dim), rank)


MLPProperty = Callable[[MLPEvidence], list[Violation]]
MLP_SPEC: dict[str, MLPProperty] = {}
# evidence measured inside the candidate's process (its collectives, counted in its worker): no points
SELF_REPORTED = frozenset({"mlp_forward_uses_one_all_reduce"})


def mlp_property(fn: MLPProperty) -> MLPProperty:
    MLP_SPEC[fn.__name__] = fn
    return fn


def _compared(name: str, ev: MLPEvidence, r: int, key: str, expected, bound, what: str) -> list[Violation]:
    return compare_on_rank(name, r, ev.ranks[r].get(key), expected, bound, what)


@mlp_property
def mlp_output_matches_the_dense_mlp(ev: MLPEvidence) -> list[Violation]:
    name = "mlp_output_matches_the_dense_mlp"
    return [v for r in range(len(ev.ranks))
            for v in _compared(name, ev, r, "output", ev.dense.output, ev.bounds["output"], "output")]


@mlp_property
def mlp_input_grad_matches_the_dense_mlp(ev: MLPEvidence) -> list[Violation]:
    name = "mlp_input_grad_matches_the_dense_mlp"
    return [v for r in range(len(ev.ranks))
            for v in _compared(name, ev, r, "input_grad", ev.dense.input_grad, ev.bounds["input_grad"], "input grad")]


@mlp_property
def mlp_parameter_grads_match_the_dense_mlp(ev: MLPEvidence) -> list[Violation]:
    name, dn, b = "mlp_parameter_grads_match_the_dense_mlp", ev.dense, ev.bounds
    out = []
    for r, res in enumerate(ev.ranks):
        rows, cols = ev.hidden_slice("w1_shard", 0, r), ev.hidden_slice("w2_shard", 1, r)
        out += _compared(name, ev, r, "w1_grad", dn.w1_grad[rows], b["w1_grad"][rows], "column weight grad")
        out += _compared(name, ev, r, "w2_grad", dn.w2_grad[:, cols], b["w2_grad"][:, cols], "row weight grad")
        if dn.b1_grad is not None:
            out += _compared(name, ev, r, "b1_grad", dn.b1_grad[rows], b["b1_grad"][rows], "column bias grad")
        if dn.b2_grad is not None and res.get("b2_shard") is not None:  # a row bias may live on some ranks
            out += _compared(name, ev, r, "b2_grad", dn.b2_grad, b["b2_grad"], "row bias grad")
    return out


def _kind(call: str) -> str:
    return call.split("(", 1)[0]


def _is_all_reduce(call: str) -> bool:
    """c10d's ``allreduce_`` or the functional collectives' ``all_reduce`` (DTensor's)."""
    return _kind(call).startswith(("allreduce", "all_reduce"))


@mlp_property
def mlp_forward_uses_one_all_reduce(ev: MLPEvidence) -> list[Violation]:
    name = "mlp_forward_uses_one_all_reduce"
    may_skip = ev.case.world_size == 1 or ev.dense.output.numel() == 0
    out = []
    for r, res in enumerate(ev.ranks):
        calls = res.get("forward_collectives") or []
        reduces = [c for c in calls if _is_all_reduce(c)]
        others = [c for c in calls if not _is_all_reduce(c)]
        if others or len(reduces) > 1 or (not reduces and not may_skip):
            out.append(Violation(name, f"rank {r}'s forward ran {len(calls)} collective(s) {calls} "
                                       "(elements sent in parentheses); the MLP needs exactly one all-reduce",
                                 r, "communication"))
    return out


def _construction_failed(ev: MLPEvidence, failed: list[int]) -> str:
    return construction_raised(failed, {r: res.get("construct_error") for r, res in enumerate(ev.ranks)}, ":")


def evidence(suite, case: MLPCase) -> MLPEvidence:
    """Run ``case`` for the suite's impl on ``case.world_size`` ranks and gather the verdict's inputs."""
    t = make_mlp_tensors(case)
    ranks, crash = run_on_every_rank(suite, case, "run_mlp", t.as_dict())
    dense = dense_mlp(t, case.activation)
    bounds = mlp_bounds(t, dense, case.activation, case.torch_dtype, case.world_size)
    return MLPEvidence(case, t, ranks, crash, dense, bounds, suite.capabilities.of("mlp").uneven_shards)


def violations(suite, case: MLPCase, prop: str, ev: Optional[MLPEvidence] = None) -> list[Violation]:
    ev = ev or evidence(suite, case)
    pre = preconditions(prop, ev.crash, ev.ranks, lambda failed: _construction_failed(ev, failed),
                        rejection_declared=ev.case.uneven and not ev.uneven_shards_supported)
    return pre if pre is not None else MLP_SPEC[prop](ev)


# judged of a forward-only MLP (capability backward=False); the rest read a backward pass
FORWARD = ("mlp_output_matches_the_dense_mlp", "mlp_forward_uses_one_all_reduce")
