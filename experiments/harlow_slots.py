"""Harlow's presentations after the first, split by where the rewarded object is: at the slot it
held at the lifetime's first presentation (``same_slot``) or at the other one (``moved``). The
job's ``correct_after_first`` is their pooled fraction. A rule that has learned *which object*
pays picks it wherever it is; one that has only learned *which slot* paid is right on ``same_slot``
and wrong on ``moved``; the uniform policy picks it on 1/3 of both (three slots, the objects on
the two sides).

Held-out lifetimes of the RL job's seed (``rl_job.seeds_for(seed, 0, n)``): the tuned hand rules
(step sizes tuned on train-split lifetimes exactly as ``marl-net run --family rl`` does), the uniform
policy, and the learned rules of any run folders given (on the env each was meta-trained with).
``--encoding difference`` shows the network ``code left - code right`` instead of a code per slot
(``marl_net.tasks.harlow``; network 9-20-3), one object code for both sides::

    python experiments/harlow_slots.py [RUN_DIR ...] [--lifetimes 256] [--seed 0] [--encoding slots] [--json FILE]
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


# the preset's overrides per encoding: the network's input is the observation, the previous action and reward
ENCODINGS = {"slots": {}, "difference": {"layers": (9, 20, 3), "task_kwargs": {"encoding": "difference"}}}


def measure(runs: list[Path], lifetimes: int, seed: int, encoding: str = "slots") -> dict[str, dict]:
    eval_seeds = rl_job.seeds_for(seed, 0, lifetimes)
    tune_seeds = rl_job.seeds_for(seed, 1, rl_job.BUDGETS["default"].tune_seeds)
    harlow = preset("harlow", **ENCODINGS[encoding])
    rows: dict[str, dict] = {}
    for run in runs:
        policy, env, _ = load_policy(run / "policies" / "rl_harlow.pt")
        trained = env.task_kwargs.get("encoding", "slots")
        if trained != encoding:
            raise ValueError(f"{run}: its rule was meta-trained with encoding {trained!r}; pass --encoding {trained}")
        rows[f"learned_rl ({run.name})"] = rl_job.learned_run(policy, env.replace(split="heldout"), eval_seeds)
    for rule in RULES:
        config = EnvConfig(**rl_hand_rules.env_kwargs(rule, **harlow))
        steps = rl_hand_rules.tune_step_sizes(rule, config, rl_baselines.GRID, tune_seeds)[0]
        rows[f"{rule} (lr {steps['lr']:g})"] = rl_hand_rules.run(rule, config.replace(split="heldout"), seeds=eval_seeds,
                                                                  strict=False, **steps)
    rows["uniform"] = rl_baselines.uniform_run(EnvConfig(**{**harlow, "observations": ("weight",)}), eval_seeds)
    return {name: {"correct_after_first": rec.summary()["correct_after_first"], **rec.harlow_slots()}
            for name, rec in rows.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="folders written by marl-net run --family rl (with rl_harlow.pt)")
    parser.add_argument("--lifetimes", type=int, default=256, help="held-out lifetimes (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="the RL job's seed whose held-out and tuning lifetimes to use")
    parser.add_argument("--encoding", choices=sorted(ENCODINGS), default="slots",
                        help="what the network sees of the objects (default slots: a code per slot, MetODS' task)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.lifetimes < 1:
        parser.error(f"--lifetimes {args.lifetimes}: give at least 1")
    for run in args.runs:
        if not (run / "policies" / "rl_harlow.pt").is_file():
            parser.error(f"{run}: no policies/rl_harlow.pt; give folders of marl-net run --family rl that trained harlow")
    torch.set_num_threads(1)
    try:
        rows = measure(args.runs, args.lifetimes, args.seed, args.encoding)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"held-out Harlow ({args.encoding} encoding), {args.lifetimes} lifetimes of seed {args.seed}; "
          "presentations after the first:")
    print(f"{'rule':<40} {'all':>6} {'same slot':>10} {'n':>5} {'moved':>7} {'n':>5}")
    for name, r in rows.items():
        print(f"{name:<40} {r['correct_after_first']:>6.3f} {r['same_slot']:>10.3f} {r['same_slot_n']:>5} "
              f"{r['moved']:>7.3f} {r['moved_n']:>5}")
    if args.json:
        args.json.write_text(json.dumps({"lifetimes": args.lifetimes, "seed": args.seed, "encoding": args.encoding,
                                              "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
