"""A hand-written three-factor rule on node perturbation's signals: what these inputs allow.

The rule ladder's ``perturbation`` level gives the learned rule NP's signals
(``marl_net.levels``). This script writes the obvious rule on those inputs by hand
and runs it in the same env (same action clipping, the same 50 updates, the same held-out tasks,
initial weights and minibatches as the main job):

    delta_w = lr / sigma * np_eligibility * np_error        NP's own step (Cai & Cheng, sec. 4)
              - shrink * w       while step_fraction < until  early weight shrinkage
              + momentum * prev_delta                         heavy-ball momentum

Its four constants are tuned per setting on the *train* split (final loss, 16 networks), as the
main job tunes NP's step size; the held-out final loss is then printed next to NP alone (the same
grid with no shrinkage and no momentum) in the same env. Run::

    python experiments/three_factor_rule.py [--set env.action_scale=0.1] [--seed 0]

About half a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from marl_net import suite
from marl_net.commands.run import parse_job_overrides
from marl_net.evaluation import episode_seeds, rollout
from marl_net.heldout import heldout_seeds
from marl_net.meta_training import train_config
from marl_net.rules.common import DEFAULT_SIGMA

GRID = {"lr": (0.03, 0.09, 0.27), "shrink": (0.0, 0.01, 0.03), "until": (0.2, 0.5), "momentum": (0.0, 0.5)}


def three_factor_rule(names, action_scale: float, lr: float, shrink: float, until: float, momentum: float):
    """The rule as a policy: observations ``[N, K, F + 1]`` -> actions ``[N, K]`` (in action units)."""
    col = {name: i for i, name in enumerate(names)}

    def act(obs: torch.Tensor) -> torch.Tensor:
        np_step = lr / DEFAULT_SIGMA * obs[..., col["np_eligibility"]] * obs[..., col["np_error"]]
        early = (obs[..., col["step_fraction"]] < until).float()
        delta = np_step - shrink * early * obs[..., col["weight"]]
        return (delta / action_scale + momentum * obs[..., col["prev_delta"]]) * obs[..., -1]

    return act


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="main-job env settings, as for marl-net run (e.g. env.action_scale=0.1)")
    parser.add_argument("--seed", type=int, default=0, help="the main job's seed (held-out tasks)")
    parser.add_argument("--episodes", type=int, default=64, help="held-out networks per setting (default 64)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    overrides = parse_job_overrides(args.overrides)
    train = train_config("perturbation", overrides)
    settings = {task: suite.setting(task, train) for task in ("teacher_student", "teacher_student_wide")}
    grid = [g for g in itertools.product(*GRID.values()) if g[1] > 0 or g[2] == GRID["until"][0]]
    print(f"action_scale {train.action_scale}; held-out final loss, {args.episodes} networks")
    for task in ("teacher_student", "teacher_student_wide"):
        on_train = settings[task].replace(split="train")
        scores = {g: float(rollout(three_factor_rule(train.observations, train.action_scale, *g), on_train,
                                   episode_seeds(0, 16)).curves[:, -1].mean()) for g in grid}
        best = min(scores, key=scores.get)
        np_alone = min((g for g in grid if g[1] == 0 and g[3] == 0), key=scores.get)
        for label, g in (("three-factor", best), ("NP alone", np_alone)):
            curves = rollout(three_factor_rule(train.observations, train.action_scale, *g), settings[task],
                             heldout_seeds(args.seed, args.episodes)).curves
            print(f"{task:22s} {label:13s} {dict(zip(GRID, g))}  final {float(curves[:, -1].mean()):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
