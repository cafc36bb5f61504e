"""Harlow's presentations after the first, split by where the rewarded object is: at the slot it
held at the lifetime's first presentation (``same_slot``) or at the other one (``moved``). The
job's ``correct_after_first`` is their pooled fraction. A rule that has learned *which object*
pays picks it wherever it is; one that has only learned *which slot* paid is right on ``same_slot``
and wrong on ``moved``; the uniform policy picks it on 1/3 of both (three slots, the objects on
the two sides). ``neither`` is the fraction of the later presentations on which the network chose a
slot without an object (the middle one, the fixation point); the rest of the misses chose the other
object.

Held-out lifetimes of the RL job's seed (``rl_job.seeds_for(seed, 0, n)``): the tuned hand rules
(step sizes tuned on train-split lifetimes exactly as ``marl-net run --family rl`` does), the uniform
policy, and the learned rules of any run folders given. ``--preset harlow_difference`` shows the
network ``code left - code right`` instead of a code per slot (``marl_net.tasks.harlow``'s
``encoding``; its rules meta-trained by ``marl-net run --family rl --tasks harlow_difference``)::

    python experiments/harlow_slots.py [RUN_DIR ...] [--preset harlow] [--lifetimes 256] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from marl_net import rl_baselines, rl_job
from marl_net.config import EnvConfig
from marl_net.meta_training import load_policy
from marl_net.policies import rl_hand_rules
from marl_net.tasks.rl import preset

RULES = ("reinforce", "reinforce_backprop")
PRESETS = ("harlow", "harlow_difference")


def measure(runs: list[Path], lifetimes: int, seed: int, name: str = "harlow") -> dict[str, dict]:
    eval_seeds = rl_job.seeds_for(seed, 0, lifetimes)
    tune_seeds = rl_job.seeds_for(seed, 1, rl_job.BUDGETS["default"].tune_seeds)
    rows: dict[str, dict] = {}
    for run in runs:
        policy, env, _ = load_policy(run / "policies" / f"rl_{name}.pt")
        config = EnvConfig.from_kwargs(**{**env.to_dict(), **preset(name), "split": "heldout"})  # as the job does
        rows[f"learned_rl ({run.name})"] = rl_job.learned_run(policy, config, eval_seeds)
    for rule in RULES:
        steps = rl_baselines.tuned_step_sizes(rule, name, {}, tune_seeds)
        config = rl_baselines.hand_rule_config(rule, name).replace(split="heldout")
        rows[f"{rule} (lr {steps['lr']:g})"] = rl_hand_rules.run(rule, config, seeds=eval_seeds, strict=False, **steps)
    rows["uniform"] = rl_baselines.uniform_run(EnvConfig(**preset(name, observations=("weight",))), eval_seeds)
    return {row: {"correct_after_first": rec.summary()["correct_after_first"], **rec.harlow_slots()}
            for row, rec in rows.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="folders written by marl-net run --family rl (with policies/rl_PRESET.pt)")
    parser.add_argument("--lifetimes", type=int, default=256, help="held-out lifetimes (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="the RL job's seed whose held-out and tuning lifetimes to use")
    parser.add_argument("--preset", choices=PRESETS, default="harlow",
                        help="harlow (a code per slot, MetODS' task; the default) or harlow_difference")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.lifetimes < 1:
        parser.error(f"--lifetimes {args.lifetimes}: give at least 1")
    for run in args.runs:
        if not (run / "policies" / f"rl_{args.preset}.pt").is_file():
            parser.error(f"{run}: no policies/rl_{args.preset}.pt; give folders of marl-net run --family rl that "
                         f"trained {args.preset}")
    torch.set_num_threads(1)
    rows = measure(args.runs, args.lifetimes, args.seed, args.preset)
    print(f"held-out {args.preset}, {args.lifetimes} lifetimes of seed {args.seed}; presentations after the first:")
    print(f"{'rule':<40} {'all':>6} {'same slot':>10} {'n':>5} {'moved':>7} {'n':>5} {'neither':>8}")
    for name, r in rows.items():
        print(f"{name:<40} {r['correct_after_first']:>6.3f} {r['same_slot']:>10.3f} {r['same_slot_n']:>5} "
              f"{r['moved']:>7.3f} {r['moved_n']:>5} {r['neither']:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"lifetimes": args.lifetimes, "seed": args.seed, "preset": args.preset,
                                              "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
