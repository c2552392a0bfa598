"""transformers 5.25.0: LlamaDecoderLayer sharded by LlamaConfig.base_model_tp_plan ("colwise" k_proj / v_proj)
with fewer kv heads than TP ranks: sharding succeeds (nothing checks num_key_value_heads against the TP size),
and the forward fails mid-attention, LlamaAttention's view(*input_shape, -1, head_dim) of a k_proj shard
holding half a head: RuntimeError "shape '[1, 4, -1, 2]' is invalid for input of size 4" (1 kv head, head_dim
2, on 2 ranks). huggingface/transformers #48307 is this failure at load time of a real checkpoint. Expected:
an error while sharding (or kv heads replicated over the ranks that share them)."""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from transformers.distributed.sharding_utils import DtensorShardOperation, _dtensor_from_local_like
from transformers.integrations.tensor_parallel import ALL_PARALLEL_STYLES
from transformers.models.llama.configuration_llama import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

WORLD_SIZE = 2


def sharded_layer(config, mesh):
    """apply_tensor_parallelism's shard_param and install_forward, and the loader's shard of each full weight."""
    layer = LlamaDecoderLayer(config, layer_idx=0)
    modules = dict(layer.named_modules())
    for key, style_name in LlamaConfig.base_model_tp_plan.items():
        module, style = modules[key.removeprefix("layers.*.")], ALL_PARALLEL_STYLES[style_name]
        for name, full in list(module.named_parameters(recurse=False)):
            style.shard_param(module, name, mesh)
            ref = module._parameters[name]
            module._parameters[name] = nn.Parameter(_dtensor_from_local_like(
                DtensorShardOperation(ref).shard_tensor(full.detach()), ref))
        style.install_forward(module, mesh)
    return layer


def check(rank: int, world_size: int) -> list[str]:
    mesh = DeviceMesh.from_group(dist.group.WORLD, "cpu")
    config = LlamaConfig(hidden_size=4, intermediate_size=4, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=2, num_hidden_layers=1, vocab_size=2)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    try:
        layer = sharded_layer(config, mesh)
    except Exception as exc:  # the expected behaviour: refused while sharding
        return [] if "head" in str(exc) else [f"sharding raised, not about heads: {exc}"]
    s = 4
    cos, sin = torch.ones(1, s, 2), torch.zeros(1, s, 2)
    try:
        layer(torch.randn(1, s, 4), position_embeddings=(cos, sin))
    except RuntimeError as exc:
        return [f"1 kv head on {world_size} ranks: sharding accepted it, the forward raised mid-attention: "
                f"RuntimeError: {str(exc).splitlines()[0]}"]
    return [f"1 kv head on {world_size} ranks: sharding accepted it and the forward ran (on half a kv head)"]
