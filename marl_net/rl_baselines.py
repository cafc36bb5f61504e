"""Baselines on the RL inner tasks, tuned on train tasks and measured on held-out ones.

``python -m marl_net.rl_baselines [--quick]`` tunes the step sizes of each hand RL rule
(``marl_net.policies.rl_hand_rules``: REINFORCE with a running baseline on the output synapses,
REINFORCE with backprop, Weight Maximization with its output, hidden and critic step sizes tuned one
after the other, on the network it requires: Bernoulli hidden units, incoming ownership, biases) on
train-split lifetimes of every RL preset, then prints its held-out
metrics (``marl_net.rl_metrics``) beside a uniform random policy's and, on the bandits, Thompson
sampling's (Beta(1, 1) priors: the Bayes-optimal-like reference, not a weight-changing rule). The
larger maze (``maze_large``) is evaluated with the step sizes tuned on ``maze``. A rule that cannot
act on a preset is listed as skipped with the reason. It exits 1 when a tuned rule earns no more
than the uniform policy on a bandit (the rules' sanity target).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np
import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.policies import rl_hand_rules
from marl_net.rl_metrics import LifetimeRecorder
from marl_net.tasks.rl import preset

RULES = ("reinforce", "reinforce_backprop", "weight_max")
# Every hand rule's step sizes are tuned over this grid (3x apart); a pick at either end is flagged
# (:func:`at_grid_edge`), since the best value may lie beyond it.
GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TUNED_ON = {"maze_large": "maze"}  # evaluated with the step size tuned on another preset


def uniform_policy(config: EnvConfig, seeds: Sequence[int]) -> dict[str, float]:
    """Held-out metrics of a uniform random policy: a network with (near) zero weights that never
    changes them (``init_gain=1e-6``, zero actions)."""
    return uniform_run(config, seeds).summary()


def uniform_run(config: EnvConfig, seeds: Sequence[int]) -> LifetimeRecorder:
    """The held-out lifetimes of :func:`uniform_policy`, recorded."""
    config = config.replace(split="heldout", init_gain=1e-6)
    core = NetworkWeightsCore(config, copies=len(seeds))
    core.seed([int(s) for s in seeds])
    core.reset()
    recorder = LifetimeRecorder(core)
    recorder.record()
    zeros = torch.zeros(core.copies, core.ownership.num_agents, core.ownership.max_fan)
    for _ in range(config.max_cycles):
        core.step(zeros)
        recorder.record()
    return recorder


def thompson_regret(arm_probs: torch.Tensor, pulls: int, inner: int, seed: int) -> torch.Tensor:
    """Expected cumulative regret ``[E]`` of Thompson sampling with Beta(1, 1) priors over
    ``pulls`` pulls of the bandits ``arm_probs [E, k]``, ``inner`` independent runs each (mean)."""
    rng = np.random.default_rng(seed)
    p = arm_probs.double().numpy()[:, None, :].repeat(inner, 1)  # [E, B, k]
    wins, losses = np.ones_like(p), np.ones_like(p)
    regret = np.zeros(p.shape[:2])
    best = p.max(-1)
    for _ in range(pulls):
        arm = rng.beta(wins, losses).argmax(-1)[..., None]
        chosen = np.take_along_axis(p, arm, -1)[..., 0]
        reward = rng.random(chosen.shape) < chosen
        np.put_along_axis(wins, arm, np.take_along_axis(wins, arm, -1) + reward[..., None], -1)
        np.put_along_axis(losses, arm, np.take_along_axis(losses, arm, -1) + (~reward)[..., None], -1)
        regret += best - chosen
    return torch.from_numpy(regret.mean(1))


def heldout_arm_probabilities(config: EnvConfig, seeds: Sequence[int]) -> torch.Tensor:
    """The arm probabilities of the held-out bandits the copies seeded ``seeds`` play."""
    core = NetworkWeightsCore(config.replace(split="heldout"), copies=len(seeds))
    core.seed([int(s) for s in seeds])
    core.reset()
    return core.rl_state["arm_probs"]


def hand_rule_config(rule: str, name: str) -> EnvConfig:
    """The env of hand rule ``rule`` on RL preset ``name`` (``rl_hand_rules.env_kwargs``)."""
    return EnvConfig(**rl_hand_rules.env_kwargs(rule, **preset(name)))


def tuned_step_sizes(rule: str, name: str, tuned: dict, tune_seeds: Sequence[int],
                     grid: Sequence[float] = GRID) -> dict[str, float]:
    """Rule ``rule``'s step sizes for preset ``name``, tuned on the preset of :data:`TUNED_ON`
    (``rl_hand_rules.tune_step_sizes``), remembered in ``tuned`` by (rule, that preset)."""
    source = TUNED_ON.get(name, name)
    if (rule, source) not in tuned:
        tuned[rule, source] = rl_hand_rules.tune_step_sizes(rule, hand_rule_config(rule, source), grid, tune_seeds)[0]
    return tuned[rule, source]


def at_grid_edge(steps: dict[str, float], grid: Sequence[float] = GRID) -> list[str]:
    """The step sizes of ``steps`` (name -> value) tuned to the first or last value of ``grid``."""
    ends = (min(grid), max(grid))
    return [f"{k} {v:g}" for k, v in steps.items() if v in ends]


def refused(rule: str, name: str) -> str | None:
    """Why ``rule`` cannot act on preset ``name`` (or on the preset its step sizes come from), or None."""
    for p in dict.fromkeys((name, TUNED_ON.get(name, name))):
        reason = rl_hand_rules.refusal(rule, hand_rule_config(rule, p))
        if reason:
            return f"{rule} on {p}: {reason}"
    return None


def measure(presets: Sequence[str], tune_seeds: Sequence[int], eval_seeds: Sequence[int],
            grid: Sequence[float] = GRID) -> dict:
    """``{preset: {rule: {step sizes, "tuned_on", metrics...}}}``; a rule that cannot act on a
    preset is left out of its row and listed under ``"skipped"`` (``{"preset/rule": reason}``)."""
    results: dict = {}
    tuned: dict = {}
    skipped: dict[str, str] = {}
    for name in presets:
        row: dict = {}
        for rule in RULES:
            reason = refused(rule, name)
            if reason:
                skipped[f"{name}/{rule}"] = reason
                continue
            steps = tuned_step_sizes(rule, name, tuned, tune_seeds, grid)
            metrics = rl_hand_rules.evaluate(rule, hand_rule_config(rule, name), seeds=eval_seeds, **steps)
            row[rule] = {**steps, "tuned_on": TUNED_ON.get(name, name), **metrics}
            edges = at_grid_edge(steps, grid)
            if edges:
                row[rule]["at_grid_edge"] = ", ".join(edges)
        base = EnvConfig(**preset(name, observations=("weight",)))
        row["uniform"] = uniform_policy(base, eval_seeds)
        if base.task == "bandit":
            probs = heldout_arm_probabilities(base, eval_seeds)
            row["thompson"] = {"regret": float(thompson_regret(probs, base.max_cycles + 1, 16, seed=0).mean())}
        results[name] = row
    if skipped:
        results["skipped"] = skipped
    return results


def table(results: dict) -> str:
    lines = []
    for name, row in results.items():
        if name == "skipped":
            lines += [f"skipped {key}: {reason}" for key, reason in row.items()]
            continue
        for method, m in row.items():
            figures = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
            lines.append(f"{name:<11} {method:<19} {figures}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marl_net.rl_baselines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 tuning and 8 evaluation seeds instead of 32 and 256")
    parser.add_argument("--presets", default="bandit2,bandit10,harlow,maze,maze_large,cartpole")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    presets = [p for p in args.presets.split(",") if p]
    for p in presets:
        preset(p)  # unknown names: ValueError naming the choices
    tune_seeds, eval_seeds = (range(4), range(1000, 1008)) if args.quick else (range(32), range(1000, 1256))
    results = measure(presets, tune_seeds, eval_seeds)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    missed = [f"{name}/{rule}" for name, row in results.items() if name.startswith("bandit") for rule in RULES
              if rule in row and row[rule]["mean_reward"] <= row["uniform"]["mean_reward"]]
    if missed:
        print(f"MISSED: tuned rules no better than the uniform policy: {missed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
