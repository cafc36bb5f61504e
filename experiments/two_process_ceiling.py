"""The most two worker processes could give on this machine: fast PPO (the throughput benchmark's
launch, one torch and kernel thread) in one process on N copies (default 256, the benchmark's),
then two independent processes of N / 2 copies each at the same time, nothing shared between them.
Prints the agent-steps/s of both and their ratio, the ceiling for ``FastPPOConfig(workers=2)`` on
N copies (which adds the per-minibatch sums)::

    python experiments/two_process_ceiling.py                 # about 10 seconds on 2 cores
    python experiments/two_process_ceiling.py --copies 1024   # larger batches per process
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

ITERATIONS = 6


def run(copies: int) -> float:
    """Agent-steps/s of fast PPO on ``copies`` copies: its batch over the median iteration time
    (after one warm-up)."""
    import torch

    from marl_net.commands.bench import ENV, THROUGHPUT
    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    torch.set_num_threads(1)
    ppo = {**THROUGHPUT["ppo"], "copies": copies, "rollout_steps": 20, "minibatch_size": 120 * copies,
           "kernel_threads": 1, "torch_threads": 1}
    trainer = FastPPO(ENV, THROUGHPUT["policy"], FastPPOConfig.from_kwargs(**ppo), seed=0)
    trainer.train()
    seconds = statistics.median(trainer.train()["iteration_time_s"] for _ in range(ITERATIONS))
    return trainer.steps * trainer.env.num_rows / seconds


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(run(int(sys.argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=256, help="copies of the one process (even; each of the two "
                        "gets half); default 256")
    copies = parser.parse_args().copies
    if copies < 2 or copies % 2:
        parser.error(f"--copies {copies}: give an even number of at least 2")
    child = [sys.executable, __file__, "--child"]
    one = float(subprocess.run(child + [str(copies)], capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen(child + [str(copies // 2)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    two = 2 * min(float(p.communicate()[0]) for p in pair)  # equal work: the pair runs at its slower's pace
    print(f"{f'one process, {copies} copies:':<36}{one:12,.0f} agent-steps/s")
    print(f"{f'two processes, {copies // 2} copies each:':<36}{two:12,.0f} agent-steps/s   ({two / one:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
