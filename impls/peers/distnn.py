"""torch's own autograd collectives (``torch.distributed.nn.functional``) as the primitives family's peer.

``torch.distributed.nn.functional.all_gather`` / ``all_reduce`` are autograd functions users build their own
tensor-parallel code on (no library in between). Their backward follows another convention than the spec's
primitives: every rank's output is a separate term of one global loss, so ``all_gather``'s backward sums every
rank's grad for this rank's piece (a reduce-scatter; on Gloo an all-to-all of ``dist.scatter`` calls and a sum)
and ``all_reduce``'s backward all-reduces the grads. The spec's primitives take the upstream grad of a
replicated output as the same on every rank (counted once). The adapter writes the two primitives a user
would build on them under the spec's convention, each a thin composition that still runs dist.nn's forward
and backward:

- ``gather_from`` (all-gather of equal slices along the last dim / this rank's slice of the grad):
  ``torch.cat(all_gather(x), -1)`` with the other ranks' pieces detached, so each rank's backward hands
  dist.nn's all_gather the grad of its own piece alone (zeros for the others): the reduce-scatter then
  returns exactly this rank's slice of its upstream grad (its value plus zeros, exact).
- ``copy_to`` (identity / all-reduce of the grads): ``all_reduce`` of ``x`` on rank 0 and of
  ``x - x.detach()`` (zeros carrying ``x``'s grad path) on the other ranks: the forward is ``x`` exactly
  (``x`` plus zeros), the backward dist.nn's all-reduce of the upstream grads.

``reduce_from`` (identity backward) and ``scatter_to`` (an all-gather backward) have no dist.nn function
whose backward is theirs, so the peer declares the two above only (``primitives``); it has no layers
(``column_gather_output`` and ``row_input_is_parallel`` declare none: every layer family is skipped as not
declared). torch alone: ``pytest --impl=distnn tests/properties/test_families.py -k primitive``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from tpconform.impls.peers import Peer
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

# CI runs its two primitives at world sizes 1-2 (seconds: torch alone, no layers).
PEER = Peer(summary="torch.distributed.nn.functional all_gather / all_reduce as gather_from / copy_to",
            requires="", distribution="torch",
            ci_scope=("--world-sizes=1-2", "tests/properties/test_families.py", "-k", "primitive"))

NO_LAYERS = "the distnn peer has no layers: torch.distributed.nn.functional offers collectives only"


def gather_from(x: torch.Tensor, group) -> torch.Tensor:
    """The ranks' ``x`` concatenated along the last dim; backward: this rank's slice of its upstream grad."""
    rank = dist.get_rank(group)
    pieces = dist_nn.all_gather(x, group=group)
    return torch.cat([p if i == rank else p.detach() for i, p in enumerate(pieces)], dim=-1)


def copy_to(x: torch.Tensor, group) -> torch.Tensor:
    """``x``; backward: the sum over ranks of the upstream grads (dist.nn's all-reduce of them)."""
    mine = x if dist.get_rank(group) == 0 else x - x.detach()
    return dist_nn.all_reduce(mine, group=group)


class Impl(TensorParallelImpl):
    """torch.distributed.nn.functional's all_gather and all_reduce as two of the four primitives; no layers."""

    name = "distnn"
    version = str(torch.__version__)
    capabilities = Capabilities(column_gather_output=(), row_input_is_parallel=(), uneven_shards=True,
                                primitives=("copy_to", "gather_from"))

    def column(self, weight, bias, *, gather_output, group):
        raise NotImplementedError(NO_LAYERS)

    def row(self, weight, bias, *, input_is_parallel, group):
        raise NotImplementedError(NO_LAYERS)

    def primitives(self, group):
        return {"copy_to": lambda x: copy_to(x, group), "gather_from": lambda x: gather_from(x, group)}
