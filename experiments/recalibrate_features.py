"""Is a learned rule's loss on a new setting an input-scaling artifact? TRAIN split only.

A learned rule's policy reads each observation feature times a fixed scale (``SynapsePolicy.
feature_scale``), set once before meta-training from one episode of the untrained policy on the
meta-training setting (``marl_net.fast.tune_trainable.trainer_from_launch``). On another setting the
features' magnitudes differ (another loss, fan-in, horizon). This script repeats that calibration
on the *train split* of a held-out setting (an untrained policy of the same configuration, seeded
as meta-training seeds it, over the setting's tuned base rule at the rule's trained correction
scale), gives the saved rule those scales, and prints the tuned-metric final loss (the mean of each
curve's last tenth over ``--tune-seeds`` train-split networks) at correction scales from about 0
(the base rule alone) to the trained one, for the rule with its trained scales and with the
recalibrated ones. No held-out task is used::

    python experiments/recalibrate_features.py docs/results/ladder_seed0/policies/feedback.pt --setting mnist1d

(a few minutes on the 2-core VM for ``mnist1d``, about one for ``teacher_student``.)
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from marl_net import suite
from marl_net.evaluation import sample_observations
from marl_net.heldout import over_tuned_base, tuning_seeds
from marl_net.meta_training import load_policy
from marl_net.policies.recurrent_policy import make_policy
from marl_net.rules.tuning import tune_action_scale

SCALES = (1e-6, 1 / 27, 1 / 9, 1 / 3, 1.0)


def recalibrated(policy: torch.nn.Module, config, seed: int) -> torch.nn.Module:
    """A copy of ``policy`` whose feature scales are those the meta-training calibration gives on
    ``config``: from one episode of an untrained policy of the same configuration, seeded ``seed``."""
    torch.manual_seed(seed)
    fresh = make_policy(policy.config)
    out = copy.deepcopy(policy)
    with torch.no_grad():
        out.feature_scale.copy_(fresh.calibrate(sample_observations(fresh, config, seed=seed)))
    return out.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", help="a learned rule saved by marl-net run (RUN_DIR/policies/LEVEL.pt)")
    parser.add_argument("--setting", required=True, choices=list(suite.SUITE))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune-seeds", type=int, default=8)
    parser.add_argument("--points", type=int, default=6, help="the base rule's step-size grid size")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy, trained, level = load_policy(args.policy)
    seeds = tuning_seeds(args.seed, args.tune_seeds)
    # the setting's base rule (if any) at its step size tuned on this train split
    config, _ = over_tuned_base(suite.setting(args.setting, trained, split="train"), {}, seeds, args.points)
    rules = {"trained": policy, "recalibrated": recalibrated(policy, config, args.seed)}
    ratio = (rules["recalibrated"].feature_scale / policy.feature_scale).tolist()
    print("recalibrated / trained feature scale: "
          + "  ".join(f"{n}: {r:.3g}" for n, r in zip(trained.observations, ratio)), flush=True)
    rows = {"policy": args.policy, "level": level, "setting": args.setting, "base_rate": config.base_rate,
            "action_scale": config.action_scale, "scales": list(SCALES),
            "feature_scale_ratio": dict(zip(trained.observations, ratio)), "final": {}}
    for name, rule in rules.items():
        with torch.no_grad():
            tuned = tune_action_scale(rule, config, seeds, SCALES, extend=0)  # a scan of SCALES
        rows["final"][name] = tuned.scores
        print(f"{args.setting}, {name} feature scales; correction scale: final loss  "
              + "  ".join(f"{s:.4g}: {v:.4g}" for s, v in zip(SCALES, tuned.scores)), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
