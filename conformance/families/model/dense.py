"""The tiny dense model the suite owns: token embedding -> ``n_layers`` of the block family's dense block
-> final RMSNorm -> lm_head -> mean cross entropy, with the lm_head's weight optionally the embedding's
(tied: one parameter, used twice).

``Model`` is built twice from the same numbers: in float64 by the verdict (the truth) and in the case's
dtype on each rank, where the impl parallelises it (torchtitan's names: ``tok_embeddings``,
``layers.<i>``, ``norm``, ``output``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tpconform.families.block.dense import Block, RMSNorm, block_weights


class Model(nn.Module):
    def __init__(self, case, dtype: torch.dtype):
        super().__init__()
        self.config = case
        self.tok_embeddings = nn.Embedding(case.vocab, case.hidden, dtype=dtype)
        self.layers = nn.ModuleList(Block(case, dtype) for _ in range(case.n_layers))
        self.norm = RMSNorm(case.hidden, dtype)
        self.output = nn.Linear(case.hidden, case.vocab, bias=False, dtype=dtype)
        if case.tied:
            self.output.weight = self.tok_embeddings.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h))

    def loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross entropy over every token (a plan may replace it: ``model.loss_fn = ...``)."""
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(0, 1))


def build_model(case, dtype: torch.dtype, weights: dict[str, torch.Tensor]) -> Model:
    """The dense model in ``dtype`` holding ``weights`` (by parameter name; tied: the embedding's only)."""
    model = Model(case, dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(weights[name])
    return model


def model_weights(case, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every parameter, rounded to the case's dtype: the embedding ``N(0, 1)``, an untied lm_head
    ``N(0, 1/hidden)``, each block's as the block family draws them, the final norm around 1."""
    dt = case.torch_dtype
    out = {"tok_embeddings.weight": torch.randn(case.vocab, case.hidden, generator=gen, dtype=torch.float64).to(dt)}
    for i in range(case.n_layers):
        out.update({f"layers.{i}.{k}": v for k, v in block_weights(case, gen).items()})
    out["norm.weight"] = (0.5 + torch.rand(case.hidden, generator=gen, dtype=torch.float64)).to(dt)
    if not case.tied:
        out["output.weight"] = (torch.randn(case.vocab, case.hidden, generator=gen, dtype=torch.float64)
                                * case.hidden ** -0.5).to(dt)
    return out


def aliases(model: nn.Module) -> dict[str, str]:
    """Every parameter's name (duplicates kept) -> the first name of the same parameter object: tied
    weights map to one name (``output.weight`` -> ``tok_embeddings.weight``)."""
    first: dict[int, str] = {}
    out = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        out[name] = first.setdefault(id(p), name)
    return out
