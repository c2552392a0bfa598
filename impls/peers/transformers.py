"""Hugging Face transformers' tensor-parallel styles (``transformers.distributed.tensor_parallel``, re-exported
by ``transformers.integrations.tensor_parallel``) as a peer: 5.25.0.

transformers 5.x shards a model by a plan (``tp_plan``: module or parameter name -> style name, the styles in
``ALL_PARALLEL_STYLES``); ``apply_tensor_parallelism`` calls each style's ``shard_param`` on the parameters
(DTensor placeholders) and ``install_forward`` on the modules, and the weight loader then fills each rank's
local shard (``DtensorShardOperation.shard_tensor`` of the checkpoint tensor, wrapped by
``_dtensor_from_local_like``). The adapter does exactly that on one dense module, with the full weight as
the "checkpoint" (:func:`_parallelize`). How the protocol maps onto the styles:

- column, ``gather_output=True``  -> ``"colwise_gather_output"``: ``ColwiseParallel(output_layouts=Replicate())``
- column, ``gather_output=False`` -> ``"colwise"``: ``ColwiseParallel()`` (output ``Shard(-1)``, returned local)
- row, ``input_is_parallel=True``  -> ``"rowwise"``: ``RowwiseParallel()`` (the local input is this rank's
  slice of ``in_features``: the style wraps it itself, with the true global width)
- row, ``input_is_parallel=False`` -> ``"rowwise_split_input"``: ``RowwiseParallel(input_layouts=Replicate())``
- sequence parallel: ``ColwiseParallel(input_layouts=Shard(0))`` (the sequence gathered forward,
  reduce-scattered backward; output left sharded) and ``RowwiseParallel(output_layouts=Shard(0))``
  (reduce-scatter of the partial outputs along the sequence). transformers' own ``"sequence_parallel"``
  style is for norms (it only marks the activations ``Shard(1)``); these are the linear styles with a
  sequence layout, as its plans combine them.
- vocab-parallel embedding: ``"embedding_rowwise"``: ``EmbeddingParallel(shard_dim=0)``; uneven
  vocabularies in ``torch.chunk`` style (a trailing rank may hold an empty shard), no padding.
- merged column: ``PackedColwiseParallel(split_factor=n_blocks)`` (``"packed_colwise"`` is the
  ``split_factor=2`` gate-up instance) on the blocks concatenated: the weight is ``_StridedShard(0, n)``
  (rank ``r`` holds its slice of every block, in block order), so only equal blocks are expressible:
  ``families={"merged": {"equal_blocks": True}}``.
- primitives: ``parallel_utils._AllReduceBackward`` (copy-to: identity / all-reduce of the grad) and
  ``_AllReduceForward`` (reduce-from: all-reduce / identity), the two transformers has (it has no scatter /
  gather autograd functions: those go through DTensor redistributes): ``primitives=("copy_to", "reduce_from")``.
- mesh: a 1-D CPU (Gloo) ``DeviceMesh.from_group`` of the group the suite gives (WORLD or a sub-group).
- training mode: the suite runs forward with grad enabled, so the styles take their DTensor path; under
  ``torch.no_grad()`` (the repeated-inference properties) ``ColwiseParallel`` / ``RowwiseParallel`` take
  their local inference fast path (local weight, ``dist.all_reduce`` of the output, the bias once), which is
  checked too.

- the block (``build_tp_block``, the block family's builder way): a ``LlamaDecoderLayer`` of a tiny
  ``LlamaConfig`` matching the dense block (heads, kv heads, head dim, FFN, rms eps, RoPE theta; biases through
  ``attention_bias`` / ``mlp_bias``; eager attention), the dense weights copied in (HF's ``rotate_half`` is the
  suite's RoPE convention: no permutation), sharded with ``LlamaConfig.base_model_tp_plan``'s styles (q/k/v,
  gate/up ``"colwise"``, o/down ``"rowwise"``) each applied as above; under sequence parallelism the norms
  take transformers' ``"sequence_parallel"`` style and the projections ``ColwiseParallel(input_layouts=Shard(1))``
  / ``RowwiseParallel(output_layouts=Shard(1))`` (:func:`_llama_block`). Outside the layer, as ``LlamaModel``
  passes them: the causal mask (additive, ``finfo.min`` above the diagonal) and the RoPE tables (the suite's,
  rounded to the dtype: ``LlamaRotaryEmbedding`` is the model's, not the layer's). The name map: the
  projections' weights ``Shard`` 0 (column) or 1 (row), column biases 0, row biases and norms replicated.

Parameters are DTensors: shards and grads are read back with ``to_local()``; the optimizer steps the DTensors.

Install without letting it touch torch: ``pip install --no-deps transformers==5.25.0`` then ``pip install
--no-deps regex huggingface_hub httpx2 httpcore2 h11 idna truststore pyyaml 'safetensors>=0.8.0' tokenizers
tqdm filelock packaging`` (what importing its tensor-parallel module needs; the line is
``PEER.install`` below).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import cast

import torch
import torch.distributed as dist
from torch import nn
from tpconform.families.block.dense import EPS, THETA, rope_tables
from tpconform.impls.peers import Peer
from tpconform.impls.peers.dense import dense_linear
from tpconform.impls.peers.dtensor import _local, _mesh
from tpconform.impls.protocol import Capabilities, TensorParallelImpl

# CI (transformers 5.x is not installed by CI) runs its own four deviations' families, the packed (merged) column
# and its two primitives, at world sizes 1-3 (~10 s); its colwise / rowwise / embedding / sequence-parallel styles
# are DTensor ones, whose inherited entries the default run (TPCONFORM_PEERS_FULL=1) checks.
PEER = Peer(summary="HF transformers 5.25.0 TP styles: colwise/rowwise, SP, embedding_rowwise, packed_colwise, "
                    "2 primitives",
            requires="transformers", distribution="transformers==5.25.0",
            install="pip install --no-deps transformers==5.25.0 && pip install --no-deps regex huggingface_hub httpx2 accelerate "
                    "httpcore2 h11 idna truststore pyyaml 'safetensors>=0.8.0' tokenizers tqdm filelock packaging",
            series="5.", ci_scope=("--world-sizes=1-3", "tests/properties/test_families.py", "-k", "primitive or merged"))

warnings.filterwarnings("ignore", message=".*PyTorch was not found.*")
try:
    import transformers
    from torch.distributed.tensor import DTensor, Shard
    from transformers.distributed.parallel_utils import _AllReduceBackward, _AllReduceForward
    from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
    from transformers.integrations.tensor_parallel import (
        ALL_PARALLEL_STYLES,
        ColwiseParallel,
        PackedColwiseParallel,
        RowwiseParallel,
    )
    from transformers.models.llama.configuration_llama import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaForCausalLM
except ImportError as exc:  # one clear line through registry.load
    raise ImportError(f"{exc}; install transformers: {PEER.install}") from None


def _parallelize(module: nn.Module, style, group) -> nn.Module:
    """``apply_tensor_parallelism`` and the weight loader on one module: each parameter made a DTensor by
    ``style.shard_param``, this rank's shard of the full value loaded as transformers' loader does
    (``DtensorShardOperation(param).shard_tensor(full)``), then ``style.install_forward``."""
    mesh = _mesh(group)
    for name, full in list(module.named_parameters(recurse=False)):
        style.shard_param(module, name, mesh)
        ref = cast(DTensor, module._parameters[name])  # the placeholder shard_param made
        local = DtensorShardOperation(ref).shard_tensor(full.detach())
        module._parameters[name] = nn.Parameter(_dtensor_from_local_like(local, ref), requires_grad=True)
    return style.install_forward(module, mesh)


# the dense block's parameter names -> LlamaDecoderLayer's, with how its style shards them (the name map)
LLAMA_NAMES = {"attention_norm": ("input_layernorm", None), "ffn_norm": ("post_attention_layernorm", None),
               "attention.wq": ("self_attn.q_proj", 0), "attention.wk": ("self_attn.k_proj", 0),
               "attention.wv": ("self_attn.v_proj", 0), "attention.wo": ("self_attn.o_proj", 1),
               "feed_forward.w1": ("mlp.gate_proj", 0), "feed_forward.w3": ("mlp.up_proj", 0),
               "feed_forward.w2": ("mlp.down_proj", 1)}


def _llama_config(dense):
    attn, bias = dense.attention, dense.attention.wq.bias is not None
    config = LlamaConfig(hidden_size=attn.wq.in_features, intermediate_size=dense.feed_forward.w1.out_features,
                         num_attention_heads=attn.n_heads, num_key_value_heads=attn.n_kv_heads,
                         head_dim=attn.head_dim, rms_norm_eps=EPS, rope_theta=THETA, attention_bias=bias,
                         mlp_bias=bias, hidden_act="silu", num_hidden_layers=1, vocab_size=2)
    config._attn_implementation = "eager"
    return config


def _llama_plan(sequence_parallel: bool) -> dict:
    """``LlamaConfig.base_model_tp_plan`` for one layer, its style names resolved; under sequence parallelism
    the norms ``"sequence_parallel"`` and the projections' inputs / outputs on the sequence shard."""
    plan = {k.removeprefix("layers.*."): ALL_PARALLEL_STYLES[v] for k, v in LlamaConfig.base_model_tp_plan.items()}
    if sequence_parallel:
        plan = {k: (ColwiseParallel(input_layouts=Shard(1)) if isinstance(style, ColwiseParallel)
                    else RowwiseParallel(output_layouts=Shard(1))) for k, style in plan.items()}
        plan.update({"input_layernorm": ALL_PARALLEL_STYLES["sequence_parallel"],
                     "post_attention_layernorm": ALL_PARALLEL_STYLES["sequence_parallel"]})
    return plan


class LlamaBlock(nn.Module):
    """A sharded ``LlamaDecoderLayer`` called as the suite calls a block: ``x [batch, seq (its shard under
    SP), hidden]`` in and out; the causal mask and the RoPE tables made as ``LlamaModel`` makes them."""

    def __init__(self, layer, head_dim: int, sequence_parallel: bool, world_size: int):
        super().__init__()
        self.layer, self.head_dim = layer, head_dim
        self.shards = world_size if sequence_parallel else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[0], x.shape[1] * self.shards
        cos, sin = rope_tables(s, self.head_dim, x.dtype)
        mask = torch.zeros(s, s, dtype=x.dtype).masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1),
                                                            torch.finfo(x.dtype).min)
        return self.layer(x, attention_mask=mask[None, None].expand(b, 1, s, s),
                          position_embeddings=(cos[None].expand(b, s, -1), sin[None].expand(b, s, -1)))


def _llama_block(dense, group):
    """The dense block as a ``LlamaDecoderLayer``, sharded by transformers' styles; with its name map."""
    sequence_parallel = bool(getattr(dense, "sequence_parallel", False))
    layer = LlamaDecoderLayer(_llama_config(dense), layer_idx=0).to(dense.attention.wq.weight.dtype)
    theirs, dense_params = dict(layer.named_parameters()), dict(dense.named_parameters())
    name_map = {}
    with torch.no_grad():
        for ours, (hf, dim) in LLAMA_NAMES.items():
            for kind in ("weight", "bias"):
                if f"{ours}.{kind}" in dense_params:
                    theirs[f"{hf}.{kind}"].copy_(dense_params[f"{ours}.{kind}"])
                    name_map[f"{ours}.{kind}"] = (f"layer.{hf}.{kind}", None if kind == "bias" and dim == 1 else dim)
    modules = dict(layer.named_modules())
    for name, style in _llama_plan(sequence_parallel).items():
        if isinstance(style, (ColwiseParallel, RowwiseParallel)):
            _parallelize(modules[name], style, group)
        else:  # the norms' style: replicated weights, its forward marks the sequence shard
            style.install_forward(modules[name], _mesh(group))
    return LlamaBlock(layer, dense.attention.head_dim, sequence_parallel, torch.distributed.get_world_size(group)), name_map


class SuiteRope(nn.Module):
    """``LlamaModel.rotary_emb``'s place: the suite's RoPE tables (float64, rounded to the dtype), as the block
    builder passes them, so the check reads transformers' tensor parallelism, not its float32 angles."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor):
        cos, sin = rope_tables(position_ids.shape[-1], self.head_dim, x.dtype)
        return cos[None].expand(x.shape[0], -1, -1), sin[None].expand(x.shape[0], -1, -1)


class LlamaCausalLM(nn.Module):
    """A ``LlamaForCausalLM`` loaded by ``from_pretrained(..., distributed_config=DistributedConfig(tp_size=p))``
    (transformers' own tensor-parallel loading, its model's ``tp_plan``), called as the suite calls a model:
    the token ids in, the logits out."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=tokens).logits


def _llama_causal_lm(dense, group):
    """The dense model written as a transformers checkpoint (its config and a safetensors file of the dense
    weights under Llama's names) into a folder of this rank's, then loaded as a user loads a model for
    tensor parallelism; with the name map (Llama's ``tp_plan``: the embedding ``embedding_rowwise``, q/k/v and
    gate/up ``colwise``, o/down ``rowwise``, the lm_head ``colwise_gather_output``; the norms replicated)."""
    import shutil
    import tempfile

    from safetensors.torch import save_file
    from transformers.distributed import DistributedConfig

    config, first = dense.config, dense.layers[0]
    attn, bias = first.attention, first.attention.wq.bias is not None
    dtype = dense.tok_embeddings.weight.dtype
    llama = LlamaConfig(hidden_size=config.hidden, intermediate_size=config.ffn, num_attention_heads=config.n_heads,
                        num_key_value_heads=config.n_kv_heads, head_dim=attn.head_dim, rms_norm_eps=EPS,
                        rope_theta=THETA, attention_bias=bias, mlp_bias=bias, hidden_act="silu",
                        num_hidden_layers=config.n_layers, vocab_size=config.vocab, tie_word_embeddings=config.tied)
    names = {"tok_embeddings.weight": ("model.embed_tokens.weight", 0), "norm.weight": ("model.norm.weight", None),
             "output.weight": ("lm_head.weight", 0)}
    for i in range(config.n_layers):
        for ours, (hf, dim) in LLAMA_NAMES.items():
            names[f"layers.{i}.{ours}.weight"] = (f"model.layers.{i}.{hf}.weight", dim)
            names[f"layers.{i}.{ours}.bias"] = (f"model.layers.{i}.{hf}.bias", 0 if dim == 0 else None)
    weights = {n: p.detach().contiguous().clone() for n, p in dense.named_parameters()}
    folder = tempfile.mkdtemp(prefix="tpconform-hf-")
    try:
        llama.save_pretrained(folder)
        save_file({names[n][0]: w for n, w in weights.items()}, os.path.join(folder, "model.safetensors"),
                  metadata={"format": "pt"})
        hf = LlamaForCausalLM.from_pretrained(folder, distributed_config=DistributedConfig(tp_size=dist.get_world_size(group)),
                                              dtype=dtype, attn_implementation="eager")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    hf.model.rotary_emb = SuiteRope(attn.head_dim)
    dense_names = {n for n, _ in dense.named_parameters(remove_duplicate=False)}  # tied: output.weight too
    name_map = {ours: (f"hf.{theirs}", dim) for ours, (theirs, dim) in names.items() if ours in dense_names}
    return LlamaCausalLM(hf), name_map


class Impl(TensorParallelImpl):
    """transformers 5.x TP styles on a dense ``nn.Linear`` / ``nn.Embedding``: every linear option, uneven
    shards, every dtype; sequence parallel, vocab-parallel embedding, merged (equal blocks) and two primitives."""

    name = "transformers"
    version = str(transformers.__version__)
    capabilities = Capabilities(uneven_shards=True,
                                families={"merged": {"equal_blocks": True},
                                          "primitives": {"primitives": ("copy_to", "reduce_from")}})

    def column(self, weight, bias, *, gather_output, group):
        style = ALL_PARALLEL_STYLES["colwise_gather_output" if gather_output else "colwise"]
        return _parallelize(dense_linear(weight, bias), style, group)

    def row(self, weight, bias, *, input_is_parallel, group):
        style = ALL_PARALLEL_STYLES["rowwise" if input_is_parallel else "rowwise_split_input"]
        return _parallelize(dense_linear(weight, bias), style, group)

    def column_sequence_parallel(self, weight, bias, *, group):
        return _parallelize(dense_linear(weight, bias), ColwiseParallel(input_layouts=Shard(0)), group)

    def row_sequence_parallel(self, weight, bias, *, group):
        return _parallelize(dense_linear(weight, bias), RowwiseParallel(output_layouts=Shard(0)), group)

    def vocab_parallel_embedding(self, weight, *, group):
        vocab, dim = weight.shape
        embedding = nn.Embedding(vocab, dim, dtype=weight.dtype)
        with torch.no_grad():
            embedding.weight.copy_(weight)
        return _parallelize(embedding, ALL_PARALLEL_STYLES["embedding_rowwise"], group)

    def merged_column(self, weights, biases, *, group):
        weight = torch.cat(list(weights))
        bias = None if biases is None or biases[0] is None else torch.cat(list(biases))
        return _parallelize(dense_linear(weight, bias), PackedColwiseParallel(split_factor=len(weights)), group)

    def build_tp_block(self, block, group):
        return _llama_block(block, group)

    def build_tp_model(self, model, group):
        """The tiny model through ``LlamaForCausalLM.from_pretrained`` with ``DistributedConfig(tp_size=p)``
        (loading needs accelerate: not offered without it)."""
        if importlib.util.find_spec("accelerate") is None:
            return None
        return _llama_causal_lm(model, group)

    def primitives(self, group):
        return {
            "copy_to": lambda x: _AllReduceBackward.apply(x, group),
            "reduce_from": lambda x: _AllReduceForward.apply(x, group),
        }

    def shards(self, layer):
        bias = getattr(layer, "bias", None)
        return _local(layer.weight), (None if bias is None else _local(bias))

    def parameters(self, layer):
        return [p for p in (layer.weight, getattr(layer, "bias", None)) if p is not None]

    def shard_grads(self, layer):
        bias = getattr(layer, "bias", None)
        return _local(layer.weight.grad), (None if bias is None else _local(bias.grad))

