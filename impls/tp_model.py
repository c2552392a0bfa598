"""The reference's builder for the model family (``impl.build_tp_model``, declared in
``conformance/families/model/case.py``): the tiny model made of the suite's own parallel layers, Megatron-style,
from the dense model's weights, with the name map that says which of its parameters holds which dense one.

- the token embedding: :class:`~tpconform.impls.vocab_parallel.VocabParallelEmbedding` (the vocab's rows split,
  ids outside a rank's rows masked, the partial embeddings all-reduced);
- each block: the block family's builder (:class:`~tpconform.impls.tp_block.TPBlock`: two all-reduces);
- the final norm replicated;
- the lm_head: a :class:`~tpconform.impls.layers.ColumnParallelLinear` on the same vocab rows as the embedding
  (tied: the embedding's parameter itself), its logits all-gathered, or under loss parallelism left sharded on
  the vocab (``tp_dense_slice``) for a vocab-parallel cross entropy (after Megatron-LM's) as ``loss_fn``.

What it cannot express is refused while building, on every rank alike: a block's heads, kv heads or FFN width
not divisible by the world size (the block builder's check), and a vocab with fewer rows than ranks (a rank
would hold no row). No sequence parallelism (the family asks none of a builder)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tpconform.families.block.plan import PlanCannotExpress, check_expressible
from tpconform.impls.cross_entropy import VocabParallelCrossEntropy
from tpconform.impls.layers import Collectives, ColumnParallelLinear
from tpconform.impls.tp_block import TPBlock, TPRMSNorm
from tpconform.impls.tp_block import name_map as block_name_map
from tpconform.impls.vocab_parallel import VocabParallelEmbedding


class TPModel(nn.Module):
    """One rank's part of the model: the whole token ids in, the logits (whole, or this rank's vocab columns
    under loss parallelism) out."""

    def __init__(self, dense, group):
        super().__init__()
        comm = self.comm = Collectives(group)
        config = self.config = dense.config
        self.tok_embeddings = VocabParallelEmbedding(dense.tok_embeddings.weight.detach(), comm=comm)
        self.start, self.stop = self.tok_embeddings.start, self.tok_embeddings.end
        self.layers = nn.ModuleList(TPBlock(layer, group) for layer in dense.layers)
        self.norm = TPRMSNorm(dense.norm.weight, comm, sequence_parallel=False)
        self.output = ColumnParallelLinear(dense.output.weight.detach(), gather_output=not config.loss_parallel, comm=comm)
        if config.tied:
            self.output.weight = self.tok_embeddings.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        logits = self.output(self.norm(h))
        if self.config.loss_parallel:
            logits.tp_dense_slice = ((0, logits.shape[0]), (0, logits.shape[1]), (self.start, self.stop))
        return logits

    def loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross entropy over every token; under loss parallelism from the vocab shards (the
        log-sum-exp and the target's logit reduced over the ranks)."""
        if not self.config.loss_parallel:
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten(0, 1))
        per_token = VocabParallelCrossEntropy.apply(logits.flatten(0, 1), targets.flatten(0, 1), self.comm.group,
                                                    self.start)
        return per_token.mean()


def name_map(dense, model: TPModel) -> dict[str, tuple[str, Any]]:
    """Dense name -> (the TP model's parameter name, how it is sharded): the embedding's and the lm_head's
    vocab rows, each block's by the block builder's map, the final norm replicated."""
    rows = (0, model.start, model.stop)
    out: dict[str, tuple[str, Any]] = {"tok_embeddings.weight": ("tok_embeddings.weight", rows)}
    for i, (layer, block) in enumerate(zip(dense.layers, model.layers)):
        out.update({f"layers.{i}.{k}": (f"layers.{i}.{theirs}", where)
                    for k, (theirs, where) in block_name_map(layer, block).items()})
    out["norm.weight"] = ("norm.weight", None)
    out["output.weight"] = ("output.weight", rows)
    return out


def build_tp_model(dense, group, model_type: type = TPModel):
    """The TP model for this rank and its name map; refuses what it cannot express (on every rank alike).
    (``model_type``: for the seeded bugs that change one step of it.)"""
    p = dist.get_world_size(group)
    for layer in dense.layers:
        check_expressible(layer, p)
    if dense.config.vocab < p:
        raise PlanCannotExpress(f"vocab {dense.config.vocab} over {p} ranks leaves a rank no vocab row")
    model = model_type(dense, group)
    return model, name_map(dense, model)

