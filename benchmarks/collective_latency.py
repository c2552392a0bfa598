"""What one Gloo collective costs at each world size on this machine: the floor under every example.

    python benchmarks/collective_latency.py [--world-sizes 2,4,8] [--ops 300] [--numel 64]

Spawns a plain Gloo group per world size (loopback, one thread per rank, a file rendezvous in a temporary
folder: nothing of the suite), warms it up, then times ``--ops`` back-to-back all-reduces and all-gathers of a
small tensor. Prints, per world size and collective, the wall time per op (the slowest rank's) and the CPU
time per op summed over every rank.

Why it is here (issue 29): a layer's example runs its own collectives (a column layer's forward all-gather and
backward all-reduce; the usage properties' micro-batches run several passes), and with more ranks than cores
each collective waits for every rank to be scheduled in turn. On the 2-core development machine (idle,
December 2026) an all-reduce of 64 floats took 1.2 ms at 2 ranks, 5.4 ms at 4 and 21 ms at 8 (CPU 1.4, 7.6 and
30 ms over all ranks; docs/PROFILE.md has the table); Gloo's thread count changed nothing. docs/PROFILE.md reads the default run's time
against it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _rank(rank: int, world_size: int, rendezvous: str, ops: int, numel: int, out) -> None:
    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    t = torch.ones(numel)
    parts = [torch.empty(numel) for _ in range(world_size)]
    timings = {}
    for name, op in (("all_reduce", lambda: dist.all_reduce(t)), ("all_gather", lambda: dist.all_gather(parts, t))):
        for _ in range(20):
            op()
        dist.barrier()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(ops):
            op()
        timings[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    out.put((rank, timings))
    dist.barrier()
    dist.destroy_process_group()


def measure(world_size: int, ops: int, numel: int) -> dict[str, tuple[float, float]]:
    """Per collective: (wall seconds per op, the slowest rank's; CPU seconds per op, every rank's summed)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="tpconform-latency-") as folder:
        procs = [ctx.Process(target=_rank, args=(r, world_size, os.path.join(folder, "rdv"), ops, numel, out))
                 for r in range(world_size)]
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    return {name: (max(t[name][0] for _, t in results) / ops, sum(t[name][1] for _, t in results) / ops)
            for name in results[0][1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-sizes", default="2,4,8")
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--numel", type=int, default=64)
    args = ap.parse_args()
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(f"{os.cpu_count()} CPUs, load average {load}; {args.ops} ops of {args.numel} float32 each")
    for ws in (int(w) for w in args.world_sizes.split(",")):
        for name, (wall, cpu) in measure(ws, args.ops, args.numel).items():
            print(f"  world size {ws}: {name:<10} {1000 * wall:7.2f} ms per op, CPU {1000 * cpu:7.2f} ms per op "
                  "(every rank)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
