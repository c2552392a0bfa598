"""megatron-core's own ``TransformerLayer`` as the block family's builder peer (``build_tp_block``, declared
in ``conformance/families/block/case.py``): the layer Megatron-LM trains, from
``get_gpt_layer_local_spec(normalization="RMSNorm")`` (megatron-core's modules alone: no TransformerEngine,
no apex), built on the suite's group with the dense block's weights, and its name map.

How the dense block maps onto it:

- config: ``TransformerConfig`` with the dense block's sizes (``num_query_groups`` = kv heads, ``kv_channels``
  = head dim), RMSNorm with the dense ``EPS``, a gated SiLU MLP (``gated_linear_unit``), biases on every
  projection or none (``add_bias_linear``, ``add_qkv_bias``), no dropout, no fusions (CPU), ``fp16`` /
  ``bf16`` as Megatron-LM sets them for those dtypes. The layer is cast to the case's dtype, as Megatron's
  ``Float16Module`` casts a model (its torch norm is made in float32 whatever ``params_dtype`` says).
- weights: the fused ``linear_qkv`` holds, per query group, ``[its q heads; its k head; its v head]`` and is
  split evenly over the ranks (with fewer kv heads than ranks a rank holds a part of one group, and
  megatron all-gathers them in the forward); ``linear_fc1`` holds ``[w1 part; w3 part]`` on each rank
  (megatron's gated unit chunks its local output in two). :func:`fused_rows` lays both out row by row, so
  the loader and the name map (its four-part ``(dim, start, stop, ranges)`` form) read the same table.
  ``linear_proj`` / ``linear_fc2`` are row layers (their weights by columns, biases whole).
- call: ``[batch, seq, hidden]`` is transposed to Megatron's ``[seq, batch, hidden]``; the causal mask is
  passed (megatron's default one is made on CUDA) and RoPE's angles are built here for the whole sequence
  (what ``GPTModel``'s ``RotaryEmbedding`` hands each layer: the rotate-half form, base ``THETA``).
- groups: ``tp`` is the suite's group; ``cp`` a one-rank group per rank (context parallelism off); ``pp``
  none. ``parallel_state`` is not initialised: where megatron reads it instead of the groups it is given,
  that is megatron's to answer for (``megatron.toml``).
- sequence parallelism: megatron-core's torch norm refuses it ("sequence parallel not supported by torch
  LayerNorm": it needs TransformerEngine or apex). The peer's norm is ``torch.nn.RMSNorm`` with its weight
  marked ``sequence_parallel`` exactly as apex's ``FusedLayerNorm`` marks it, and after each backward runs
  what Megatron-LM's training step runs next: ``finalize_model_grads``' sum over the TP group of the grads
  of parameters so marked (the norms', the row layers' biases), queued at the end of the backward.
- CPU: as the linear peer (``megatron._run_on_cpu``, the global memory buffer of ``Impl.setup``); the CUDA
  RNG tracker is megatron's inference one (no dropout to seed)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer
from torch import nn
from tpconform.families.block.dense import EPS, rope_angles
from tpconform.impls.peers.megatron import _run_on_cpu, sum_sequence_parallel_grads


class SequenceParallelRMSNorm(nn.RMSNorm):
    """``torch.nn.RMSNorm`` built as megatron builds a norm (``config``, ``hidden_size``, ``eps``), its weight
    marked ``sequence_parallel`` as apex's ``FusedLayerNorm`` marks it, for ``finalize_model_grads``."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5):
        super().__init__(hidden_size, eps=eps)
        self.weight.sequence_parallel = config.sequence_parallel  # type: ignore[attr-defined]


_CONTEXT_GROUPS: dict[tuple, Any] = {}


def _one_rank_group(group):
    """This rank's one-rank group (context parallelism off), made once per process: every rank of ``group``
    (the world's) makes all of them, as ``torch.distributed.new_group`` requires."""
    key = (id(group), group.size())
    if key not in _CONTEXT_GROUPS:
        mine = None
        for r in dist.get_process_group_ranks(group):
            g = dist.new_group([r])
            mine = g if r == dist.get_rank() else mine
        _CONTEXT_GROUPS[key] = mine
    return _CONTEXT_GROUPS[key]


def _config(dense, group) -> TransformerConfig:
    attn, ff = dense.attention, dense.feed_forward
    dtype, bias = attn.wq.weight.dtype, attn.wq.bias is not None
    p = group.size()
    return TransformerConfig(
        num_layers=1, hidden_size=attn.wq.in_features, num_attention_heads=attn.n_heads,
        num_query_groups=attn.n_kv_heads, kv_channels=attn.head_dim, ffn_hidden_size=ff.w1.out_features,
        normalization="RMSNorm", layernorm_epsilon=EPS, gated_linear_unit=True, activation_func=F.silu,
        add_bias_linear=bias, add_qkv_bias=bias, hidden_dropout=0.0, attention_dropout=0.0,
        tensor_model_parallel_size=p, sequence_parallel=bool(dense.sequence_parallel) and p > 1,
        params_dtype=dtype, fp16=dtype == torch.float16, bf16=dtype == torch.bfloat16,
        use_cpu_initialization=True, bias_activation_fusion=False, bias_dropout_fusion=False,
        apply_rope_fusion=False, masked_softmax_fusion=False, persist_layer_norm=False,
        gradient_accumulation_fusion=False)


def fused_rows(dense, world_size: int) -> dict[str, list[tuple[str, int]]]:
    """The whole (all ranks') rows of megatron's fused parameters, each as (dense projection, its row):
    ``linear_qkv``: per query group its q heads, its k head, its v head; ``linear_fc1``: per rank its share
    of ``w1`` then of ``w3``. Rank ``r`` holds the ``r``-th of ``world_size`` equal runs of rows."""
    attn, ffn = dense.attention, dense.feed_forward.w1.out_features
    hd, per_group = attn.head_dim, attn.n_heads // max(attn.n_kv_heads, 1)
    qkv: list[tuple[str, int]] = []
    for g in range(attn.n_kv_heads):
        qkv += [("attention.wq", g * per_group * hd + i) for i in range(per_group * hd)]
        qkv += [("attention.wk", g * hd + i) for i in range(hd)]
        qkv += [("attention.wv", g * hd + i) for i in range(hd)]
    share = ffn // world_size
    fc1: list[tuple[str, int]] = []
    for r in range(world_size):
        fc1 += [("feed_forward.w1", r * share + i) for i in range(share)]
        fc1 += [("feed_forward.w3", r * share + i) for i in range(share)]
    return {"self_attention.linear_qkv": qkv, "mlp.linear_fc1": fc1}


def _fused_entries(rows: list[tuple[str, int]], rank: int, world_size: int) -> dict[str, tuple[int, int, list]]:
    """Per dense projection in ``rows``: this rank's ``(start, stop, ranges of its local rows)`` (empty when it
    holds none of it)."""
    n, left = divmod(len(rows), world_size)
    if left:  # megatron's divide() refuses such a layer before this is read
        raise ValueError(f"{len(rows)} fused rows do not split over {world_size} ranks")
    mine = rows[rank * n:(rank + 1) * n]
    out: dict[str, tuple[int, int, list]] = {}
    for name in dict.fromkeys(d for d, _ in rows):
        local = [j for j, (d, _) in enumerate(mine) if d == name]
        dense_rows = [mine[j][1] for j in local]
        start = dense_rows[0] if dense_rows else 0
        if dense_rows != list(range(start, start + len(dense_rows))):
            raise ValueError(f"{name}'s rows on rank {rank} are not one run of the dense rows")
        ranges: list[list[int]] = []
        for j in local:
            if ranges and ranges[-1][1] == j:
                ranges[-1][1] = j + 1
            else:
                ranges.append([j, j + 1])
        out[name] = (start, start + len(dense_rows), [tuple(r) for r in ranges])
    return out


class MegatronBlock(nn.Module):
    """megatron's layer called as the suite calls a block: ``x [batch, seq (its shard under SP), hidden]``."""

    def __init__(self, layer: TransformerLayer, config: TransformerConfig, group, head_dim: int, seq_len: int):
        super().__init__()
        self.layer, self.config, self.group = layer, config, group
        self.head_dim, self.seq_len = head_dim, seq_len

    def rotary_angles(self, seq: int) -> torch.Tensor:
        """RoPE's angles ``[seq, 1, 1, head_dim]`` (``RotaryEmbedding``'s output), in float64: megatron takes
        their cos and sin and rounds them to the activations' dtype."""
        return rope_angles(seq, self.head_dim)[:, None, None, :]

    def finalize_grads(self) -> None:
        sum_sequence_parallel_grads(self.layer, self.config, self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.seq_len if self.config.sequence_parallel else x.shape[1]
        mask = torch.ones(seq, seq, dtype=torch.bool).triu(1)[None, None]
        out, _ = self.layer(x.transpose(0, 1).contiguous(), attention_mask=mask,
                            rotary_pos_emb=self.rotary_angles(seq))
        if self.config.sequence_parallel and out.requires_grad:
            def at_the_end_of_backward(grad):
                torch.autograd.Variable._execution_engine.queue_callback(self.finalize_grads)
                return grad
            out.register_hook(at_the_end_of_backward)
        return out.transpose(0, 1)


def build_tp_block(dense, group) -> tuple[nn.Module, dict]:
    """megatron's ``TransformerLayer`` holding the dense block's weights on this rank, and its name map."""
    _run_on_cpu()
    tensor_parallel.random.initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
    config = _config(dense, group)
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    if config.sequence_parallel:
        spec.submodules.input_layernorm = SequenceParallelRMSNorm
        spec.submodules.pre_mlp_layernorm = SequenceParallelRMSNorm
    groups = ProcessGroupCollection()
    groups.tp, groups.cp, groups.pp = group, _one_rank_group(group), None
    layer = TransformerLayer(config, spec.submodules, layer_number=1, pg_collection=groups)
    layer = layer.to(config.params_dtype)
    rank, p = group.rank(), group.size()
    theirs, ours = dict(layer.named_parameters()), dict(dense.named_parameters())
    name_map: dict[str, tuple[str, Any]] = {"attention_norm.weight": ("layer.input_layernorm.weight", None),
                                            "ffn_norm.weight": ("layer.pre_mlp_layernorm.weight", None)}
    with torch.no_grad():
        for fused, rows in fused_rows(dense, p).items():
            entries = _fused_entries(rows, rank, p)
            for kind in ("weight", "bias"):
                if f"{fused}.{kind}" not in theirs:
                    continue
                local = theirs[f"{fused}.{kind}"]
                for name, (start, stop, ranges) in entries.items():
                    part = ours[f"{name}.{kind}"][start:stop]
                    for (a, b), piece in zip(ranges, part.split([b - a for a, b in ranges])):
                        local[a:b].copy_(piece)
                    name_map[f"{name}.{kind}"] = (f"layer.{fused}.{kind}", (0, start, stop, ranges))
        for name, row in (("attention.wo", "self_attention.linear_proj"), ("feed_forward.w2", "mlp.linear_fc2")):
            weight = theirs[f"{row}.weight"]
            n = weight.shape[1]
            weight.copy_(ours[f"{name}.weight"][:, rank * n:(rank + 1) * n])
            name_map[f"{name}.weight"] = (f"layer.{row}.weight", (1, rank * n, (rank + 1) * n))
            if f"{name}.bias" in ours:
                theirs[f"{row}.bias"].copy_(ours[f"{name}.bias"])
                name_map[f"{name}.bias"] = (f"layer.{row}.bias", None)
        theirs["input_layernorm.weight"].copy_(dense.attention_norm.weight)
        theirs["pre_mlp_layernorm.weight"].copy_(dense.ffn_norm.weight)
    block = MegatronBlock(layer, config, group, dense.attention.head_dim, int(dense.seq_len or 0))
    return block, name_map

