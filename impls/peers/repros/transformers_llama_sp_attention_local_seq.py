"""transformers 5.25.0: no model's tp_plan is sequence-parallel, and its "sequence_parallel" style (norms on the
sequence shard) cannot be combined with the colwise styles into one for LlamaDecoderLayer: with the norms
"sequence_parallel" and q/k/v ColwiseParallel(input_layouts=Shard(1)) (each gathers the sequence), LlamaAttention
takes input_shape from its input, the LOCAL sequence shard, before q_proj gathers it, so
view(*input_shape, -1, head_dim) folds the gathered tokens into extra heads; RoPE then fails ("The size of tensor
a (2) must match the size of tensor b (4) at non-singleton dimension 2", 4 tokens on 2 ranks), and where the
shapes happened to agree the heads would be silently wrong. torch's SequenceParallel plans gather the
attention's input once (PrepareModuleInput on the attention module); transformers has no such style."""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Shard
from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
from transformers.integrations.tensor_parallel import ALL_PARALLEL_STYLES, ColwiseParallel, RowwiseParallel
from transformers.models.llama.configuration_llama import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    mesh = DeviceMesh.from_group(dist.group.WORLD, "cpu")
    config = LlamaConfig(hidden_size=4, intermediate_size=4, num_attention_heads=2, num_key_value_heads=2,
                         head_dim=2, num_hidden_layers=1, vocab_size=2)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    layer = LlamaDecoderLayer(config, layer_idx=0)
    modules = dict(layer.named_modules())
    for key, style_name in LlamaConfig.base_model_tp_plan.items():
        module = modules[key.removeprefix("layers.*.")]
        style = (ColwiseParallel(input_layouts=Shard(1)) if style_name == "colwise"
                 else RowwiseParallel(output_layouts=Shard(1)))
        for name, full in list(module.named_parameters(recurse=False)):
            style.shard_param(module, name, mesh)
            ref = module._parameters[name]
            module._parameters[name] = nn.Parameter(_dtensor_from_local_like(
                DtensorShardOperation(ref).shard_tensor(full.detach()), ref))
        style.install_forward(module, mesh)
    for norm in ("input_layernorm", "post_attention_layernorm"):
        ALL_PARALLEL_STYLES["sequence_parallel"].install_forward(modules[norm], mesh)
    s = 4  # the whole sequence; this rank holds 2 tokens
    cos, sin = torch.ones(1, s, 2), torch.zeros(1, s, 2)
    mask = torch.zeros(s, s).masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), torch.finfo(torch.float32).min)
    x = torch.randn(1, s // world_size, 4)
    try:
        y = layer(x, attention_mask=mask[None, None], position_embeddings=(cos, sin))
    except RuntimeError as exc:
        return [f"sequence-parallel LlamaDecoderLayer ({s} tokens on {world_size} ranks): RuntimeError: "
                f"{str(exc).splitlines()[0]}"]
    return [] if y.shape == x.shape else [f"output shape {list(y.shape)}, expected this rank's {list(x.shape)}"]
