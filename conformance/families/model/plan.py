"""The reference way to parallelise the suite's tiny model (rank side: imported by impls, never by the
verdict): a torchtitan-style DTensor plan.

    parallelize_module(model, mesh, {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate()),     # vocab-sharded, ids masked per shard
        "layers.<i>.<...>": the block family's plan,                       # heads and FFN width sharded
        "output": ColwiseParallel(output_layouts=Shard(-1), use_local_output=False)   # loss parallel
                  or ColwiseParallel(output_layouts=Replicate()),                     # gathered logits
    })
    every block's attention: n_heads //= p, n_kv_heads //= p
    tied: model.output.weight = model.tok_embeddings.weight

With sequence parallelism (``config.sequence_parallel``) it is torchtitan's SP plan: the embedding's
output reduce-scattered to the sequence shard (``RowwiseParallel(input_layouts=Replicate(),
output_layouts=Shard(1))``), each block's SP plan (the block family's), the final norm
``SequenceParallel()`` (its weight a Replicate DTensor whose grad DTensor all-reduces) and the lm_head's
input gathered from the shards (``ColwiseParallel(input_layouts=Shard(1), ...)``).

Tying needs the last line: ``parallelize_module`` gives each module a new DTensor parameter, so the
lm_head and the embedding, one parameter before, are two after (the class of transformers #47253). Both
shard dim 0 (the vocab), so the embedding's DTensor serves the lm_head as it is. The final norm stays
replicated. A config the plan cannot express (a block's heads, kv heads or FFN width not divisible by the
world size) is refused before any forward (:class:`PlanCannotExpress`), and so is a vocab that leaves a
rank no row (torch 2.13's DTensor embedding raises in ``index_select`` there, and ``loss_parallel()``
indexes the empty shard); the vocab need not divide otherwise (DTensor's uneven shards; the embedding's and
the loss's masks use each shard's offset).
"""

from __future__ import annotations

import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, SequenceParallel, parallelize_module
from tpconform.families.block.plan import PlanCannotExpress, check_expressible, mesh_of
from tpconform.families.block.plan import plan as block_plan

__all__ = ["PlanCannotExpress", "parallelize_model", "plan"]


def plan(config) -> dict:
    """The module-name -> style plan for ``config`` (the case: ``n_layers``, ``loss_parallel``,
    ``sequence_parallel``)."""
    sp = bool(getattr(config, "sequence_parallel", False))
    styles: dict = {"tok_embeddings": RowwiseParallel(input_layouts=Replicate(),
                                                      output_layouts=Shard(1) if sp else Replicate())}
    for i in range(config.n_layers):
        styles.update({f"layers.{i}.{name}": style for name, style in block_plan(sp).items()})
    if sp:
        styles["norm"] = SequenceParallel()
    gathered = Shard(1) if sp else Replicate()  # the lm_head's input: the norm's output, gathered under SP
    styles["output"] = (ColwiseParallel(input_layouts=gathered, output_layouts=Shard(-1), use_local_output=False)
                        if config.loss_parallel else ColwiseParallel(input_layouts=gathered, output_layouts=Replicate()))
    return styles


def localise_sharded_heads(model, p: int) -> None:
    """Each block whose query projection is sharded by rows attends over its own heads (the local counts
    are the global ones over ``p``), as torchtitan's attention does; a replicated attention keeps its own."""
    for layer in model.layers:
        attn = layer.attention
        w = attn.wq.weight
        if isinstance(w, DTensor) and any(isinstance(pl, Shard) and pl.dim == 0 for pl in w.placements):
            attn.n_heads //= p
            attn.n_kv_heads //= p


def retie(model) -> None:
    """Tied: the lm_head takes the embedding's (sharded) parameter again; refused if they are sharded
    differently (the one parameter cannot serve both)."""
    emb, out = model.tok_embeddings.weight, model.output.weight
    if emb is out:
        return
    placed = [t.placements if isinstance(t, DTensor) else None for t in (emb, out)]
    if placed[0] != placed[1]:
        raise PlanCannotExpress(f"tied embeddings: the embedding's weight is placed {placed[0]} and the lm_head's "
                                f"{placed[1]}: one parameter cannot be sharded both ways (shard both on the vocab, dim 0)")
    model.output.weight = emb


def parallelize_model(model, group, styles: dict | None = None, tie: bool = True):
    """Shard ``model`` over ``group`` with :func:`plan` (or ``styles``); refuse what it cannot express.
    (``styles``, ``tie``: for the tp_plan path and the seeded bugs that change one step of it.)"""
    p = dist.get_world_size(group)
    for layer in model.layers:
        check_expressible(layer, p)
    if p > 1 and model.config.empty_vocab_shard:
        raise PlanCannotExpress(f"vocab {model.config.vocab} over {p} ranks leaves a rank no vocab row, and torch "
                                "2.13's DTensor fails on an empty vocab shard (the embedding's index_select, "
                                "loss_parallel()'s gather)")
    if p == 1:
        return model  # nothing to shard (and DTensor cannot view a size-1 sharded dim: the block's plan)
    parallelize_module(model, mesh_of(group), plan(model.config) if styles is None else styles)
    localise_sharded_heads(model, p)
    if tie and model.config.tied:
        retie(model)
    return model
