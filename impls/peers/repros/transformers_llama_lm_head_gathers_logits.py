"""transformers 5.25.0 (with accelerate): LlamaForCausalLM's tensor-parallel plan shards the lm_head by the vocab
and always all-gathers its output (``_tp_plan = {"lm_head": "colwise_gather_output"}``): every rank gets the
whole logits, and no style keeps them vocab-sharded for a vocab-parallel loss (torch's ``loss_parallel()``,
Megatron's ``vocab_parallel_cross_entropy``), so the [tokens, vocab] logits are gathered on every rank, the
largest activation of a language model."""

import shutil
import tempfile

import torch
import torch.distributed as dist

WORLD_SIZE = 2


def check(rank: int, world_size: int) -> list[str]:
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.distributed import DistributedConfig

    config = LlamaConfig(vocab_size=6, hidden_size=4, intermediate_size=4, num_attention_heads=2,
                         num_key_value_heads=2, head_dim=2, num_hidden_layers=1)
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
    rows = model.lm_head.weight.to_local().shape[0]  # this rank's vocab rows of the lm_head
    logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    if rows < config.vocab_size and logits.shape[-1] == config.vocab_size:
        return [f"rank {rank}: the lm_head ({LlamaForCausalLM._tp_plan.get('lm_head')!r}) holds {rows} of "
                f"{config.vocab_size} vocab rows and the logits come back whole {list(logits.shape)}: gathered, "
                "with no plan that keeps them vocab-sharded"]
    return []
