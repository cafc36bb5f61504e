"""Train-split figures of saved learned RL rules: the evidence a setting of the RL job is chosen on
(never the held-out lifetimes). For each run folder and trained preset it has, the learned rule
(its Gaussian means) over train-split lifetimes of the job's tuning seeds (``rl_job.seeds_for(seed,
1, n)``), and the preset's metric (regret on the bandits, correct after the first presentation on
Harlow, steps to the first reward on the maze)::

    python experiments/rl_train_split.py RUN_DIR [RUN_DIR ...] [--lifetimes 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from marl_net import rl_job
from marl_net.meta_training import load_policy

METRIC = {"bandit2": "regret", "bandit10": "regret", "harlow": "correct_after_first", "maze": "steps_to_first_reward"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="folders written by marl-net run --family rl")
    parser.add_argument("--lifetimes", type=int, default=64, help="train-split lifetimes per preset (default 64)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for run in args.runs:
        if not (run / "results.json").is_file():
            parser.error(f"{run}: no results.json; give folders written by marl-net run --family rl")
        seed = json.loads((run / "results.json").read_text())["seed"]
        seeds = rl_job.seeds_for(seed, 1, args.lifetimes)
        for preset, metric in METRIC.items():
            path = run / "policies" / f"rl_{preset}.pt"
            if path.is_file():
                policy, env, _ = load_policy(path)
                value = rl_job.learned_run(policy, env.replace(split="train"), seeds).summary()[metric]
                print(f"{run}  {preset:9s} train-split {metric}: {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
