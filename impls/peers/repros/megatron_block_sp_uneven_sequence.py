"""megatron-core 0.16.1: a TransformerLayer with sequence parallelism cannot refuse a sequence the TP size does
not divide (the layer never sees the sequence length when built), and its sequence all-gather assumes equal
shards: with 3 tokens on 2 ranks (shards of 2 and 1, torch.chunk's split) the forward fails mid-attention or
waits on the other rank. (SP's norm here is torch's RMSNorm marked sequence_parallel as apex's FusedLayerNorm
marks it: megatron-core's own torch norm refuses SP without TransformerEngine or apex.) Expected: a refusal
before the forward, or the uneven shards gathered."""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core import utils as core_utils
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.tensor_parallel import layers as tp_layers
from megatron.core.tensor_parallel import mappings
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer
from torch import nn

WORLD_SIZE = 2


class _CpuCuda:  # CPU only: megatron allocates buffers on torch.cuda.current_device()
    def __getattr__(self, name):
        return getattr(torch.cuda, name)

    @staticmethod
    def current_device():
        return "cpu"


class _TorchOnCpu:
    cuda = _CpuCuda()

    def __getattr__(self, name):
        return getattr(torch, name)


for _module in (mappings, tp_layers, core_utils):  # in megatron's modules only; not needed on a GPU machine
    _module.torch = _TorchOnCpu()


class SequenceParallelRMSNorm(nn.RMSNorm):
    def __init__(self, config, hidden_size, eps=1e-5):
        super().__init__(hidden_size, eps=eps)
        self.weight.sequence_parallel = config.sequence_parallel


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    parallel_state._set_global_memory_buffer()
    tensor_parallel.random.initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
    context = [dist.new_group([r]) for r in range(world_size)][rank]  # context parallelism off
    groups = ProcessGroupCollection()
    groups.tp, groups.cp, groups.pp = group, context, None
    config = TransformerConfig(num_layers=1, hidden_size=4, num_attention_heads=2, num_query_groups=2,
                               kv_channels=2, ffn_hidden_size=4, normalization="RMSNorm", gated_linear_unit=True,
                               activation_func=F.silu, add_bias_linear=False, hidden_dropout=0.0,
                               attention_dropout=0.0, tensor_model_parallel_size=world_size,
                               sequence_parallel=True, use_cpu_initialization=True, bias_activation_fusion=False,
                               bias_dropout_fusion=False, apply_rope_fusion=False, masked_softmax_fusion=False,
                               gradient_accumulation_fusion=False)
    spec = get_gpt_layer_local_spec(normalization="RMSNorm").submodules
    spec.input_layernorm = spec.pre_mlp_layernorm = SequenceParallelRMSNorm
    layer = TransformerLayer(config, spec, pg_collection=groups)
    s = 3
    mask = torch.ones(s, s, dtype=torch.bool).triu(1)[None, None]
    shard = torch.randn(s, 1, 4).chunk(world_size)[rank]  # 2 tokens on rank 0, 1 on rank 1
    try:
        layer(shard, attention_mask=mask, rotary_pos_emb=torch.zeros(s, 1, 1, 2))
    except RuntimeError as exc:
        return [f"{s} tokens on {world_size} ranks under SP: built, then the forward raised: "
                f"RuntimeError: {str(exc).splitlines()[0]}"]
    return [f"{s} tokens on {world_size} ranks under SP: built, and the forward ran on unequal shards"]
