"""megatron-core 0.16.1: a TransformerLayer built on an explicit TP group (pg_collection, parallel_state not
initialised) with fewer kv heads (num_query_groups) than TP ranks builds, then fails mid-forward on every rank:
SelfAttention.get_query_key_value_tensors' path for that case all-gathers linear_qkv's output with
all_gather_last_dim_from_tensor_parallel_region(mixed_qkv) -- no group: parallel_state's, here None --
and reads get_tensor_model_parallel_rank(). Expected: the group the layer was built on (or a refusal at build)."""

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


def check(rank: int, world_size: int) -> list[str]:
    group = dist.group.WORLD
    parallel_state._set_global_memory_buffer()  # the attention's score buffer (on the CPU, above)
    tensor_parallel.random.initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
    context = [dist.new_group([r]) for r in range(world_size)][rank]  # context parallelism off
    groups = ProcessGroupCollection()
    groups.tp, groups.cp, groups.pp = group, context, None
    config = TransformerConfig(num_layers=1, hidden_size=4, num_attention_heads=2, num_query_groups=1,
                               kv_channels=2, ffn_hidden_size=4, normalization="RMSNorm", gated_linear_unit=True,
                               activation_func=F.silu, add_bias_linear=False, hidden_dropout=0.0,
                               attention_dropout=0.0, tensor_model_parallel_size=world_size,
                               use_cpu_initialization=True, bias_activation_fusion=False, bias_dropout_fusion=False,
                               apply_rope_fusion=False, masked_softmax_fusion=False,
                               gradient_accumulation_fusion=False)
    layer = TransformerLayer(config, get_gpt_layer_local_spec(normalization="RMSNorm").submodules,
                             pg_collection=groups)
    s = 2
    mask = torch.ones(s, s, dtype=torch.bool).triu(1)[None, None]
    try:
        layer(torch.randn(s, 1, 4), attention_mask=mask, rotary_pos_emb=torch.zeros(s, 1, 1, 2))
    except AttributeError as exc:
        return [f"1 kv head on {world_size} ranks, built on its TP group: the forward raised mid-attention "
                f"(a collective on parallel_state's group, not the layer's): AttributeError: {exc}"]
    return []
