"""Examples per second of the block and whole-model families, against the floor (as ``throughput.py``
measures the single layer's).

    python benchmarks/block_throughput.py [--world-sizes 2,4] [--examples 10]

For each world size and family, on one fixed even config in float32 (so runs are comparable):

- **all properties**: one example run once (every stage: for the block the optimizer step and second
  pass too) and judged on every property of its family;
- **floor**: what cannot go away — the parent's own work (tensors, float64 truth and bounds: the
  family's ``dense_*``), one parent<->worker round trip to every rank (``throughput.round_trip_seconds``)
  and the collectives the plan needs, run alone in a group of their own, back to back (the block: 4
  all-reduces of the activations per forward+backward pass, two passes; the model: the embedding's, each
  block's 4 and the logits' gather, one pass).

It prints examples per second, the floor's, and their ratio (goal, as for the layer: within 2x).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from tpconform.engine.suite import Suite  # noqa: E402
from tpconform.families.block import verdict as block_verdict  # noqa: E402
from tpconform.families.block.case import BlockCase  # noqa: E402
from tpconform.families.model import verdict as model_verdict  # noqa: E402
from tpconform.families.model.case import ModelCase  # noqa: E402
from tpconform.transport.harness import GroupPool  # noqa: E402

from benchmarks.throughput import round_trip_seconds  # noqa: E402


def block_case(ws: int, seed: int) -> BlockCase:
    return BlockCase(world_size=ws, batch=2, seq=4, hidden=8, n_heads=2 * ws, n_kv_heads=ws, head_dim=4,
                     ffn=4 * ws, bias=True, dtype="float32", seed=seed)


def model_case(ws: int, seed: int) -> ModelCase:
    return ModelCase(world_size=ws, handed_in="plan", batch=2, seq=4, vocab=4 * ws, hidden=8, n_layers=1,
                     n_heads=2 * ws, n_kv_heads=ws, head_dim=4, ffn=4 * ws, tied=False, loss_parallel=False,
                     bias=True, dtype="float32", seed=seed)


FAMILIES = {
    # family -> (case, verdict, the parent's own work, collectives per example: (all-reduces, all-gathers))
    "block": (block_case, block_verdict,
              lambda c: block_verdict.dense_block(c, block_verdict.make_tensors(c), step=True), (8, 0)),
    "model": (model_case, model_verdict,
              lambda c: model_verdict.dense_model(c, model_verdict.make_tensors(c)), (5, 2)),
}


def all_properties_rate(suite: Suite, family: str, ws: int, n: int) -> float:
    make, verdict, _, _ = FAMILIES[family]
    spec = block_verdict.BLOCK_SPEC if family == "block" else model_verdict.MODEL_SPEC
    verdict.evidence(suite, make(ws, 0))  # warm: the first example pays torch's one-time set-up
    t0 = time.perf_counter()
    for i in range(n):
        case = make(ws, i + 1)
        ev = verdict.evidence(suite, case)
        bad = [v for prop in spec for v in verdict.violations(suite, case, prop, ev)]
        if bad:
            raise SystemExit(f"the reference failed {family} at world size {ws}: {bad[0].message[:300]}")
    return n / (time.perf_counter() - t0)


def parent_seconds(family: str, ws: int, n: int = 10) -> float:
    make, _, dense, _ = FAMILIES[family]
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        dense(make(ws, i))
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _collective_rank(rank, ws, port, shape, reduces, gathers, n, queue):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=120))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=ws, timeout=timedelta(seconds=120))
    y = torch.randn(shape)

    def once():
        for _ in range(reduces):
            dist.all_reduce(y.clone())
        for _ in range(gathers):
            dist.all_gather([torch.empty_like(y) for _ in range(ws)], y)

    for _ in range(5):
        once()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(n):
        once()
    queue.put((time.perf_counter() - t0) / n)
    dist.destroy_process_group()


def collectives_seconds(family: str, ws: int, n: int = 50) -> float:
    import torch.distributed as dist

    reduces, gathers = FAMILIES[family][3]
    c = block_case(ws, 0)  # the model's fixed case has the block's batch, seq and hidden
    ctx = mp.get_context("spawn")
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_collective_rank, args=(r, ws, store.port, (c.batch, c.seq, c.hidden), reduces,
                                                         gathers, n, queue)) for r in range(ws)]
    for p in procs:
        p.start()
    times = [queue.get(timeout=600) for _ in range(ws)]
    for p in procs:
        p.join(60)
    return max(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-sizes", default="2,4")
    ap.add_argument("--examples", type=int, default=10)
    ap.add_argument("--families", default="block,model")
    args = ap.parse_args()
    sizes = [int(s) for s in args.world_sizes.split(",")]
    pool = GroupPool()
    try:
        for ws in sizes:
            suite = Suite("reference", pool, world_sizes=[ws])
            trip = round_trip_seconds(pool, ws, n=20)
            for family in args.families.split(","):
                rate = all_properties_rate(suite, family, ws, args.examples)
                floor_s = parent_seconds(family, ws) + trip + collectives_seconds(family, ws)
                print(f"{family:5} world size {ws}: {rate:6.2f} examples/s (all properties), floor "
                      f"{1 / floor_s:6.2f}/s -> {(1 / rate) / floor_s:5.2f}x the floor  (load {os.getloadavg()[0]:.0f})",
                      flush=True)
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
