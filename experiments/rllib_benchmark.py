"""Benchmark: does a short RLlib PPO run learn a rule that lowers the inner loss?

    python experiments/rllib_benchmark.py                        # defaults below, ~5 minutes on 2 cores
    python experiments/rllib_benchmark.py --iterations 40 --episodes 128

Trains the shared SynapseRLModule with PPO (``marl_net.rllib.algo.build_ppo_config``, one remote
env runner) on teacher-student *train* tasks, then rolls the untrained policy (the same module
before training) and the trained one through the batched core on the same ``--episodes``
*held-out* task instances (same seeds), acting with the Gaussian means. Prints the inner loss at
the end of an episode for both (mean, std, and the paired mean difference with its standard error)
and exits non-zero unless the trained rule's final loss is lower by at least ``--min-gain``
(relative, default 5 %) and by more than two standard errors of the paired difference.

Expected: the trained rule ends episodes at a clearly lower inner loss than the untrained one,
which barely moves the weights (see docs/rllib.md for the figures measured on this machine). For
reference (not a gate) it also prints the final loss of the hand-written rule "move every weight
toward zero", which a 30-iteration run does not reach yet.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

LAUNCH = {
    "env": {"task": "teacher_student", "layers": [8, 16, 4], "ownership": "outgoing", "reward": "loss_improvement",
            "max_cycles": 20},
    "policy": {"hidden": 32, "depth": 2},
    "ppo": {"lr": 1.0e-3, "gamma": 0.99, "lambda_": 0.95, "clip_param": 0.2, "num_epochs": 4,
            "minibatch_size": 1000, "train_batch_size": 2000, "num_env_runners": 1, "num_cpus_per_env_runner": 1},
    "run": {"seed": 0, "calibrate_features": True},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=64, help="held-out evaluation episodes")
    parser.add_argument("--reward", default=LAUNCH["env"]["reward"])
    parser.add_argument("--lr", type=float, default=LAUNCH["ppo"]["lr"])
    parser.add_argument("--no-calibrate", action="store_true", help="leave the policy's feature scales at 1")
    parser.add_argument("--min-gain", type=float, default=0.05, help="required relative drop of the final loss")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--save-policy", default=None,
                        help="save the trained SynapsePolicy here ({'config': PolicyConfig dict, 'state_dict': ...})")
    args = parser.parse_args(argv)

    import ray
    import torch

    from marl_net import numerics
    from marl_net.config import EnvConfig
    from marl_net.evaluation import rollout_losses
    from marl_net.policies.rllib_module import SHARED_MODULE_ID
    from marl_net.rllib.algo import build_ppo_config

    launch = copy.deepcopy(LAUNCH)
    launch["env"]["reward"] = args.reward
    launch["ppo"]["lr"] = args.lr
    launch["run"]["calibrate_features"] = not args.no_calibrate
    ray.init(num_cpus=max(os.cpu_count() or 2, 2), include_dashboard=False, log_to_driver=False)
    algo = build_ppo_config(launch).build_algo()
    untrained = copy.deepcopy(algo.get_module(SHARED_MODULE_ID).policy).eval()
    start = time.perf_counter()
    for i in range(args.iterations):
        result = algo.train()
        r = result.get("env_runners", {})
        print(f"iter {i + 1:3d}  train inner_loss_final {r.get('inner_loss_final', float('nan')):.4f}  "
              f"improvement {r.get('inner_loss_improvement', float('nan')):+.4f}", flush=True)
    train_s = time.perf_counter() - start
    trained = copy.deepcopy(algo.get_module(SHARED_MODULE_ID).policy).eval()
    algo.stop()
    ray.shutdown()

    if args.save_policy:
        torch.save({"config": trained.config.to_dict(), "state_dict": trained.state_dict()}, args.save_policy)
    heldout = EnvConfig.from_kwargs(**launch["env"], split="heldout")
    before = rollout_losses(untrained, heldout, args.episodes, seed=12345)[:, -1]
    after = rollout_losses(trained, heldout, args.episodes, seed=12345)[:, -1]
    # A reference, not a gate: the hand-written rule "move every weight toward zero"
    # (action = -clip(5 w)), which any learned rule on teacher-student should eventually beat.
    w = heldout.observations.index("weight")
    shrink = rollout_losses(lambda o: -(5.0 * o[..., w]).clamp(-1, 1) * o[..., -1], heldout, args.episodes,
                            seed=12345)[:, -1]
    diff = before - after
    se = float(diff.std(unbiased=True) / diff.numel() ** 0.5)
    gain = float(diff.mean() / before.mean())
    figures = {
        "iterations": args.iterations, "train_seconds": round(train_s, 1), "reward": args.reward, "lr": args.lr,
        "calibrate_features": not args.no_calibrate,
        "heldout_episodes": args.episodes,
        "final_loss_untrained_mean": float(before.mean()), "final_loss_untrained_std": float(before.std()),
        "final_loss_trained_mean": float(after.mean()), "final_loss_trained_std": float(after.std()),
        "final_loss_shrink_rule_mean": float(shrink.mean()),
        "paired_drop_mean": float(diff.mean()), "paired_drop_se": se, "relative_drop": gain,
        "numerics": numerics.describe("cpu"),  # this process's (the evaluation); env runners build the same kernels
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)
    ok = gain >= args.min_gain and float(diff.mean()) > 2 * se
    print("PASS" if ok else f"FAIL: the trained rule must lower the held-out final loss by >= {args.min_gain:.0%} "
          "and by more than 2 standard errors")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
