"""transformers 5.25.0: LlamaConfig refuses a hidden_size that is not a multiple of num_attention_heads even when
head_dim is given explicitly (hidden_size=1, 2 heads of head_dim 2): "The hidden size (1) is not a multiple of the
number of attention heads (2)". LlamaAttention never divides hidden_size by the heads when head_dim is set (its
q_proj is hidden_size -> heads * head_dim), so the layer the config describes is well defined: torch's own
nn.Linear layers build and run it. Expected: the config accepted (the check applied only when head_dim is
derived from hidden_size). One rank is enough: the refusal happens before any sharding."""

import torch
from torch import nn

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    from transformers.models.llama.configuration_llama import LlamaConfig

    hidden, heads, head_dim = 1, 2, 2
    # the projections LlamaAttention would build from this config: well defined, they run
    q_proj, o_proj = nn.Linear(hidden, heads * head_dim, bias=False), nn.Linear(heads * head_dim, hidden, bias=False)
    assert o_proj(q_proj(torch.randn(1, 3, hidden))).shape == (1, 3, hidden)
    try:
        LlamaConfig(hidden_size=hidden, intermediate_size=4, num_attention_heads=heads, num_key_value_heads=heads,
                    head_dim=head_dim, num_hidden_layers=1, vocab_size=2)
    except Exception as exc:
        return [f"LlamaConfig(hidden_size={hidden}, num_attention_heads={heads}, head_dim={head_dim}) refused: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())} (expected: accepted, head_dim is given)"]
    return []
