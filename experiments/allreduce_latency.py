"""The sum over two processes that data-parallel fast PPO makes every minibatch step, timed two
ways side by side: torch.distributed's gloo all-reduce and marl_net's star of local connections
(``marl_net.fast.data_parallel.Link``), for one number and for the shipped benchmark policy's 483
gradients. Why ``Link`` and not gloo (the docstring of marl_net/fast/data_parallel.py)::

    python experiments/allreduce_latency.py            # prints microseconds per call, median of 5 rounds

Each round times 200 calls of each way, the two ways alternating round by round.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist

from marl_net.fast.data_parallel import Link

SIZES = (1, 483)
ROUNDS, CALLS = 5, 200


def _time(fn, tensor) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn(tensor)
    return (time.perf_counter() - start) / CALLS * 1e6


def rank_main(rank: int, store: str, conn) -> dict | None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    link = Link(rank, 2, [conn])
    results = {("gloo", n): [] for n in SIZES} | {("link", n): [] for n in SIZES}
    for _ in range(ROUNDS):
        for n in SIZES:
            tensor = torch.ones(n)
            results[("gloo", n)].append(_time(dist.all_reduce, tensor))
            results[("link", n)].append(_time(link.all_reduce_, tensor))
    dist.destroy_process_group()
    return {key: statistics.median(v) for key, v in results.items()} if rank == 0 else None


def _child(store: str, conn) -> None:
    rank_main(1, store, conn)


def main() -> int:
    store = os.path.join(tempfile.mkdtemp(), "store")
    here, there = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(store, there))
    child.start()
    results = rank_main(0, store, here)
    child.join()
    print(f"two processes, torch {torch.__version__}, {os.cpu_count()} cores; us per sum (median of {ROUNDS} rounds):")
    print(f"{'numbers':>10s}{'gloo all_reduce':>18s}{'Link.all_reduce_':>18s}")
    for n in SIZES:
        print(f"{n:10d}{results[('gloo', n)]:18.1f}{results[('link', n)]:18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
