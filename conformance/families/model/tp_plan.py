"""An HF-style ``tp_plan`` (rank side): module-name patterns -> style names, applied to the suite's model
with torch's DTensor styles, as transformers applies a model's ``tp_plan`` (``layers.*.attention.wq``: the
``*`` stands for a layer's number).

The style names are transformers' where it has one (``transformers.distributed.tensor_parallel``'s
``ALL_PARALLEL_STYLES``, the same layouts), plus ``colwise_loss_parallel`` for an lm_head whose logits stay
sharded for torch's ``loss_parallel()`` (transformers has none). A pattern that matches no module, a style
name not listed, or tied weights sharded two ways are refused while parallelising, with the name."""

from __future__ import annotations

import re
from typing import Callable, Optional

from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
from tpconform.families.model.plan import PlanCannotExpress, parallelize_model

STYLES: dict[str, Callable[[], Optional[object]]] = {
    "colwise": lambda: ColwiseParallel(input_layouts=Replicate(), output_layouts=Shard(-1)),
    "rowwise": lambda: RowwiseParallel(input_layouts=Shard(-1), output_layouts=Replicate()),
    "colwise_rep": lambda: ColwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
    "colwise_gather_output": lambda: ColwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
    "rowwise_rep": lambda: RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
    "colwise_loss_parallel": lambda: ColwiseParallel(input_layouts=Replicate(), output_layouts=Shard(-1),
                                                     use_local_output=False),
    "embedding_rowwise": lambda: RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
    "vocab": lambda: RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
    "embedding_colwise": lambda: ColwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
    "replicate": lambda: None,
}
NOT_YET = {"sequence_parallel": "the tp_plan variant has no sequence parallelism (the plan variant checks it)"}


def generalised(name: str) -> str:
    """A module's name with each layer number as ``*`` (transformers' ``replace_layer_number_by_wildcard``)."""
    return re.sub(r"\.\d+(?=\.|$)", ".*", name)


def styles_of(model, tp_plan: dict) -> dict:
    """The module name -> DTensor style map ``tp_plan`` means for ``model``; refuses what it cannot apply."""
    if not isinstance(tp_plan, dict):
        raise PlanCannotExpress(f"model_tp_plan returned {type(tp_plan).__name__}, not a dict of pattern -> style name")
    names = [n for n, _ in model.named_modules() if n]
    out = {}
    for pattern, style in tp_plan.items():
        if style in NOT_YET:
            raise PlanCannotExpress(f"tp_plan {pattern!r}: style {style!r} is not applied by the suite: {NOT_YET[style]}")
        if style not in STYLES:
            raise PlanCannotExpress(f"tp_plan {pattern!r}: unknown style {style!r} (known: {', '.join(sorted(STYLES))})")
        matched = [n for n in names if n == pattern or generalised(n) == pattern]
        if not matched:
            raise PlanCannotExpress(f"tp_plan {pattern!r} matches no module of the model")
        made = [STYLES[style]() for _ in matched]
        out.update({n: s for n, s in zip(matched, made) if s is not None})
    return out


def apply_tp_plan(model, group, tp_plan: dict):
    """``model`` parallelised by ``tp_plan`` (tied weights re-tied after, as transformers ties them)."""
    return parallelize_model(model, group, styles_of(model, tp_plan))


def reference_tp_plan(config) -> dict:
    """The reference's plan as style names (Llama's ``base_model_tp_plan`` in torchtitan's module names)."""
    return {
        "tok_embeddings": "embedding_rowwise",
        "layers.*.attention.wq": "colwise", "layers.*.attention.wk": "colwise", "layers.*.attention.wv": "colwise",
        "layers.*.attention.wo": "rowwise",
        "layers.*.feed_forward.w1": "colwise", "layers.*.feed_forward.w3": "colwise",
        "layers.*.feed_forward.w2": "rowwise",
        "output": "colwise_loss_parallel" if config.loss_parallel else "colwise_rep",
    }
