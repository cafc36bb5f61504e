"""How a saved learned rule's correction and its base's step size act on one setting, TRAIN split only.

For a learned rule saved by ``marl-net run`` (``RUN_DIR/policies/LEVEL.pt``) that runs over a base
hand rule (``marl_net.base_rules``), on the train split of a held-out setting (``marl_net.suite``):
tunes the base rule's step size as the suite does, then prints the tuned-metric final loss (the
mean of each curve's last tenth, over ``--tune-seeds`` networks) for every base factor (times the
tuned step size) and every correction scale (times the ``action_scale`` that moves with the base
rate, ``heldout.over_tuned_base``); a scale near 0 is the base rule alone. No held-out task is used::

    python experiments/correction_scale.py results/main/policies/feedback.pt --setting teacher_student_long \\
        --base-factors 1,0.3333333333333333

(a minute or two per base factor on the 2-core VM for the 8-16-4 settings; ``mnist1d`` a few.)
"""

from __future__ import annotations

import argparse
import json

import torch

from marl_net import suite
from marl_net.base_rules import base_of, without_base
from marl_net.heldout import over_tuned_base, tuned_lr, tuning_seeds
from marl_net.meta_training import load_policy
from marl_net.rules.tuning import tune_action_scale

SCALES = (1e-6, 1 / 243, 1 / 81, 1 / 27, 1 / 9, 1 / 3, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", help="a learned rule saved by marl-net run (RUN_DIR/policies/LEVEL.pt)")
    parser.add_argument("--setting", required=True, choices=list(suite.SUITE))
    parser.add_argument("--base-factors", default="1", help="comma-separated factors of the base's tuned step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune-seeds", type=int, default=8)
    parser.add_argument("--points", type=int, default=6, help="the base rule's step-size grid size")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy, trained, level = load_policy(args.policy)
    config = suite.setting(args.setting, trained)
    base = base_of(config)
    if base is None:
        parser.error(f"{args.policy} runs over no hand rule (env base_update={config.base_update!r})")
    seeds = tuning_seeds(args.seed, args.tune_seeds)
    lr = tuned_lr(base.rule, without_base(config), seeds, args.points).best
    rows = {"policy": args.policy, "level": level, "setting": args.setting, "base": base.rule, "lr": lr, "rows": []}
    for factor in (float(f) for f in args.base_factors.split(",")):
        cfg, record = over_tuned_base(config, {base.rule: lr}, seeds, args.points, factor=factor)
        with torch.no_grad():
            tuned = tune_action_scale(policy, cfg, seeds, SCALES, extend=0)  # a scan of SCALES
        rows["rows"].append({"factor": factor, "base": record, "scales": list(SCALES), "final": tuned.scores})
        print(f"{args.setting}: {base.rule} lr {lr:g} x {factor:.4g}; correction scale: final loss  "
              + "  ".join(f"{s:.4g}: {v:.4g}" for s, v in zip(SCALES, tuned.scores)), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
