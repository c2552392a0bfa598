"""transformers 5.25.0: LlamaRMSNorm (and so LlamaDecoderLayer) computes in float32 whatever the model's dtype:
forward() casts the hidden states to float32, normalises, and casts back. In a float64 model the norm's output
and every grad through it carry float32 rounding (relative errors ~1e-7, about 10^8 times float64's): a float64
LlamaDecoderLayer is not a float64 computation. A float64 RMSNorm written out (x * rsqrt(mean(x^2) + eps) * w)
is exact to float64 rounding. (One rank is enough; the block family found it through the sharded layer.)"""

import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    norm = LlamaRMSNorm(8, eps=1e-6).to(torch.float64)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(8, dtype=torch.float64) + 0.5)
    expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    got = norm(x)
    err = float(((got - expected).abs() / expected.abs()).max())
    return [f"float64 LlamaRMSNorm: max relative error {err:.2e} against the float64 formula (float64 rounding "
            f"is ~1e-16): it computes in float32"] if err > 1e-12 else []
