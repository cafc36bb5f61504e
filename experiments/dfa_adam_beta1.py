"""DFA-Adam's first-moment decay (beta1), chosen on the TRAIN split: the base of the ladder's feedback level.

For each held-out setting of the suite (``marl_net.suite``) and each beta1, tunes DFA-Adam's step size
(Adam's update rule on DFA's direction, ``marl_net.rules.adam.Adam(feedback="dfa")``, beta2 0.999)
over the suite's grid and train-split networks, as the main job's default budget sizes them
(``marl_net.budgets``: grid points and networks per setting), and prints the tuned final loss (the
mean of each curve's last tenth). Optionally beside it Adam itself on the backprop gradient at the
same beta1 values (``--gradient``). No held-out task is used::

    python experiments/dfa_adam_beta1.py --beta1 0.9,0.7,0.5 --out beta1.json

(about four minutes on the 2-core VM for the five settings and three values.)
"""

from __future__ import annotations

import argparse
import json

import torch

from marl_net import budgets, levels, meta_training, suite
from marl_net.config import EnvConfig
from marl_net.heldout import tuning_seeds
from marl_net.rules.tuning import TUNING_METRIC, default_grid, tune_lr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beta1", default="0.9,0.7,0.5", help="comma-separated values (default 0.9,0.7,0.5)")
    parser.add_argument("--settings", default=",".join(suite.SUITE), help="held-out settings (train split only)")
    parser.add_argument("--gradient", action="store_true", help="also Adam on the backprop gradient")
    parser.add_argument("--seed", type=int, default=0, help="the job seed whose tuning networks are used")
    parser.add_argument("--out", default=None, help="write the rows as JSON")
    args = parser.parse_args(argv)
    try:
        betas = [float(b) for b in args.beta1.split(",") if b]
        tasks = [suite.check_setting(t).name for t in args.settings.split(",") if t]
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(1)
    env = meta_training.job_settings("perturbation", {})["env"]
    base = EnvConfig.from_kwargs(**{**env, "observations": levels.DEFAULT_FEATURES, "base_update": None,
                                    "base_rate": 0.0})
    budget = budgets.BUDGETS["default"]
    rows = []
    for task in tasks:
        sized = budget.for_setting(task)
        config = suite.setting(task, base, split="train")
        seeds = tuning_seeds(args.seed, sized["tune_seeds"])
        for name in ["dfa_adam"] + (["adam"] if args.gradient else []):
            grid = default_grid(name, config.task, sized["tune_points"])
            for beta1 in betas:
                tuned = tune_lr(name, config, seeds, grid=grid, beta1=beta1)
                lr = tuned.best
                final = tuned.scores[tuned.grid.index(lr)]
                rows.append({"setting": task, "rule": name, "beta1": beta1, "final": final, "lr": lr,
                             "networks": len(seeds), "grid": grid})
                print(f"{task:22s} {name:9s} beta1 {beta1:<4g} lr {lr:<8.3g} final {final:.5g}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "seed": args.seed, "metric": TUNING_METRIC}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
