"""Chung (2022), "Learning by Competition of Self-Interested Reinforcement Learning Agents": Table 1.

The setting: an actor of 64-32 hidden units (Bernoulli-logistic, or ReLU for the backprop row) and
a softmax output, trained online (batch 1) with Adam and per-layer learning rates; a 64-32 critic
trained by TD(lambda) backprop; gamma 0.98. Tasks: the 20-bit multiplexer (800,000 one-step
episodes), CartPole-v1 and Acrobot-v1 (1,000 episodes), LunarLander-v3 (3,000 episodes; the paper
used v2). Reported: mean and std over seeds of each run's average return over all episodes.

Run it: ``marl-net reproduce chung --task cartpole --seeds 3`` (see ``marl_net.commands.reproduce``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from marl_net.reproduce.methods import METHODS, Method, RuleOptions

# Chung (2022), Table 1 "Average return over all episodes" (10 runs): (mean, std); None = n.a.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float] | None]] = {
    "multiplexer": {"weight_max": (0.81, 0.01), "weight_max_traces": None, "reinforce": (0.29, 0.01),
                    "reinforce_thomas": (0.28, 0.02), "ste": (0.76, 0.01), "backprop": (0.84, 0.01)},
    "cartpole": {"weight_max": (390.38, 43.25), "weight_max_traces": (373.11, 17.86), "reinforce": (163.92, 64.43),
                 "reinforce_thomas": (363.71, 24.07), "ste": (420.73, 18.30), "backprop": (411.82, 25.98)},
    "acrobot": {"weight_max": (-97.05, 2.90), "weight_max_traces": (-105.00, 4.38), "reinforce": (-134.15, 8.87),
                "reinforce_thomas": (-112.26, 8.85), "ste": (-98.55, 5.05), "backprop": (-91.82, 5.24)},
    "lunarlander": {"weight_max": (111.23, 16.58), "weight_max_traces": (39.04, 14.39),
                    "reinforce": (-94.23, 19.03), "reinforce_thomas": (-66.19, 67.14), "ste": (47.53, 35.04),
                    "backprop": (71.77, 21.02)},
}


@dataclass(frozen=True)
class ChungTask:
    """One task's settings. Actor rates, decays, lambda and episode counts: /work/shared/papers/README.md
    (read from the paper's public configs); critic rates from the same configs."""

    name: str
    env_id: str | None  # None: the multiplexer
    paper_episodes: int
    quick_episodes: int
    actor_lr: tuple[float, float, float]
    actor_lr_end: tuple[float, float, float]
    lr_decay_steps: int
    critic_lr: tuple[float, float, float] = (0.0, 0.0, 0.0)
    critic_lr_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    trace_lambda: float = 0.8
    output_temperature: float = 1.0
    gamma: float = 0.98
    smooth: int = 100  # running-average window of the learning-curve plot (the paper's Fig. 2)


TASKS: dict[str, ChungTask] = {
    t.name: t
    for t in (
        ChungTask("multiplexer", None, 800_000, 500, (0.01, 1e-3, 1e-4), (0.01, 1e-3, 1e-4), 1, smooth=10_000),
        ChungTask("cartpole", "CartPole-v1", 1_000, 3, (0.02, 2e-4, 2e-5), (2e-4, 2e-6, 2e-7), 50_000,
                  (0.04, 4e-5, 4e-6), (0.004, 4e-5, 4e-6)),
        ChungTask("acrobot", "Acrobot-v1", 1_000, 2, (0.1, 1e-3, 1e-4), (0.01, 1e-4, 1e-5), 1_000_000,
                  (0.01, 1e-5, 1e-6), (0.01, 1e-5, 1e-6)),
        ChungTask("lunarlander", "LunarLander-v3", 3_000, 2, (0.08, 8e-4, 8e-5), (0.08, 8e-4, 8e-5), 1,
                  (0.02, 2e-5, 2e-6), (0.02, 2e-5, 2e-6), trace_lambda=0.9, output_temperature=2.0),
    )
}


def default_methods(task: ChungTask) -> list[Method]:
    return [m for m in METHODS.values() if task.env_id is not None or not m.multi_step_only]


def get_task(name: str) -> ChungTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def episodes_for(task: ChungTask, budget: str, episodes: int | None) -> int:
    if episodes is not None:
        if episodes < 1:
            raise ValueError(f"--episodes {episodes}: give at least 1")
        return int(episodes)
    if budget not in ("quick", "paper"):
        raise ValueError(f"--budget {budget!r}: choose quick or paper")
    return task.quick_episodes if budget == "quick" else task.paper_episodes


def run_method(task: ChungTask, method: Method, seeds, episodes: int, opts: RuleOptions | None = None,
               device="cpu", on_progress=None) -> dict:
    """Train ``method`` on ``task`` for every seed (as one batch) and summarize the returns."""
    opts = opts or RuleOptions(gamma=task.gamma, lam=task.trace_lambda)
    t0 = time.perf_counter()
    if task.env_id is None:
        from marl_net.reproduce.multiplexer import run_multiplexer as run
    else:
        from marl_net.reproduce.control import run_control as run
    returns = run(task, method, list(seeds), episodes, opts, device=device, on_progress=on_progress)
    wall = time.perf_counter() - t0
    per_seed = returns.mean(axis=1)
    return {
        "method": method.name,
        "label": method.label,
        "seeds": [int(s) for s in seeds],
        "episodes": int(episodes),
        "average_return_per_seed": per_seed.tolist(),
        "mean": float(per_seed.mean()),
        "std": float(per_seed.std()),  # population std over seeds, as the paper's code prints
        "paper": PAPER_TABLE1[task.name].get(method.name),
        "wall_s": wall,
        "wall_s_per_1000_episodes": wall / episodes * 1000,  # all seeds together, as one batch
        "returns": returns,
    }
