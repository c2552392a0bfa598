"""torch 2.13 DTensor: view_groups never returns for many empty shapes (an endless pure-Python loop), so
ColwiseParallel nn.Linear(1, 1) fed x of shape [0, 2, 1] hangs on every rank."""

import threading

from torch.distributed.tensor._ops._view_ops import view_groups

WORLD_SIZE = 1


def check(rank: int, world_size: int) -> list[str]:
    thread = threading.Thread(target=view_groups, args=([0, 1], [0, 2, 1]), daemon=True)
    thread.start()
    thread.join(timeout=5)
    if thread.is_alive():
        return ["view_groups([0, 1], [0, 2, 1]): expected a dim map at once, got no return within 5 s (it loops forever)"]
    return []
