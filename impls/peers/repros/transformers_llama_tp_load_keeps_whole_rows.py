"""transformers 5.25.0 (with accelerate): a model loaded for tensor parallelism on CPU
(``LlamaForCausalLM.from_pretrained(folder, distributed_config=DistributedConfig(tp_size=2))``) keeps, on every
rank, the whole checkpoint tensor of each weight sharded by rows (``Shard(0)``: the embedding, q/k/v, gate/up,
the lm_head): the loader narrows the loaded tensor to the rank's rows, and a narrow along dim 0 is a view, so
the local shard's storage is the whole weight (rank 0 of 2: q_proj's local [2, 4] keeps 16 elements alive).
Weights sharded by columns (o_proj, down_proj) are copies. On a GPU the copy to the device would take the view
alone; on CPU nothing copies it, and tensor parallelism saves no memory for those weights."""

import shutil
import tempfile

import torch
import torch.distributed as dist

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.distributed import DistributedConfig

    config = LlamaConfig(vocab_size=6, hidden_size=4, intermediate_size=4, num_attention_heads=2,
                         num_key_value_heads=2, head_dim=2, num_hidden_layers=1, tie_word_embeddings=False)
    # rank 0 writes the checkpoint (save_pretrained writes on the main process only), every rank loads it
    where = [tempfile.mkdtemp() if rank == 0 else None]
    dist.broadcast_object_list(where, src=0)
    folder = where[0]
    if rank == 0:
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    dist.barrier()
    model = LlamaForCausalLM.from_pretrained(folder, distributed_config=DistributedConfig(tp_size=world_size))
    dist.barrier()
    if rank == 0:
        shutil.rmtree(folder, ignore_errors=True)
    problems = []
    for name, p in model.named_parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        held = local.untyped_storage().nbytes() // local.element_size()
        if held > local.numel():
            problems.append(f"rank {rank}: {name}'s local shard {list(local.shape)} keeps {held} elements of storage "
                            f"alive (the whole {list(p.shape)} weight)")
    return problems[:3]

