"""torch 2.13 DTensor: a vocab-parallel nn.Embedding whose vocabulary is smaller than the mesh spreads it in
torch.chunk style, so a trailing rank holds an empty shard of the table ([0, dim]); its lookup raises instead of
contributing zeros: RowwiseParallel(input_layouts=Replicate()) (torch's documented vocab-parallel embedding) on
nn.Embedding(9, 1), 4 ranks (rows 3, 3, 3, 0), ids of shape [] (one token) : rank 3 raises RuntimeError
'index_select(): self indexing axis dim should be positive' in forward (DTensor's MaskPartial lookup runs the
local embedding on the empty table); ranks 0-2 then wait in the output's all-reduce that rank 3 never joins.
The dense truth is nn.Embedding's lookup of the full table."""

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

WORLD_SIZE = 4


def check(rank: int, world_size: int) -> list[str]:
    torch.manual_seed(0)
    dense = nn.Embedding(9, 1)
    layer = nn.Embedding(9, 1)
    with torch.no_grad():
        layer.weight.copy_(dense.weight)
    layer = parallelize_module(layer, init_device_mesh("cpu", (world_size,)), RowwiseParallel(input_layouts=Replicate()))
    ids = torch.tensor(5)
    try:
        out = layer(ids)
    except Exception as exc:
        return [f"expected the lookup {dense(ids).tolist()} (table shard local {list(layer.weight.to_local().shape)}), "
                f"got {type(exc).__name__}: {str(exc).splitlines()[0]}"]
    out = out.full_tensor() if hasattr(out, "full_tensor") else out
    if not torch.equal(out.detach(), dense(ids).detach()):
        return [f"expected the lookup {dense(ids).tolist()}, got {out.tolist()}"]
    return []
