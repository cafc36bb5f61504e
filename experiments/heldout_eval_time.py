"""How long a learned rule's held-out evaluation takes on a wide network (issue 22's target).

Runs ``marl_net.evaluation.rollout`` with the main job's policy shape (hidden 32, depth 2,
the perturbation level's observations) on the rule ladder's held-out ``digits_wide`` setting,
10-``WIDTH``-10 (Cai & Cheng's digits network with the default width 1000, outgoing ownership):
``--episodes`` networks (64) for ``--updates`` weight updates (500), one torch thread. A learned
rule's cost does not depend on its parameter values, so the policy is freshly initialized. Prints the wall and CPU seconds
and the synapse-steps per second, and exits 1 when the wall time passes ``--limit`` (120 s)::

    python experiments/heldout_eval_time.py                      # 64 x 500 on 10-1000-10
    python experiments/heldout_eval_time.py --updates 20         # a quick look (limit scaled)

On a shared machine wall time counts the other processes' load; CPU time does not.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from marl_net import meta_training, suite
from marl_net.evaluation import rollout
from marl_net.heldout import heldout_seeds
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=64, help="held-out networks (default 64)")
    parser.add_argument("--updates", type=int, default=500, help="weight updates per network (default 500)")
    parser.add_argument("--width", type=int, default=1000, help="hidden units (default 1000)")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds allowed for 500 updates (default 120)")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.updates < 1 or args.width < 1:
        print("--episodes, --updates and --width must be positive", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    train = meta_training.train_config("perturbation")
    setting = suite.setting("digits_wide", train)  # the ladder's held-out digits setting, 10 PCA inputs
    setting = setting.replace(layers=(10, args.width, setting.layers[-1]), max_cycles=args.updates)
    torch.manual_seed(0)
    policy = SynapsePolicy(PolicyConfig(num_features=len(train.observations) + 1, **meta_training.POLICY)).eval()
    wall, cpu = time.perf_counter(), time.process_time()
    losses = rollout(policy, setting, heldout_seeds(0, args.episodes)).curves  # the ladder's held-out networks
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    synapses = sum(a * b for a, b in zip(setting.layers[:-1], setting.layers[1:]))
    limit = args.limit * args.updates / 500
    print(f"held-out digits {'-'.join(map(str, setting.layers))} ({setting.ownership}), {args.episodes} networks x "
          f"{args.updates} updates: wall {wall:.1f} s, CPU {cpu:.1f} s, "
          f"{args.episodes * args.updates * synapses / wall:,.0f} synapse-steps/s (wall); "
          f"final loss {float(losses[:, -1].mean()):.4f}; limit {limit:.0f} s: {'met' if wall <= limit else 'MISSED'}")
    return 0 if wall <= limit else 1


if __name__ == "__main__":
    sys.exit(main())
