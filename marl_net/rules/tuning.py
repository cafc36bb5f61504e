"""A small step-size tuner: a grid over eta, every (eta, seed) pair as one copy of one batched run.

Tuning always runs on the ``train`` split (task ids disjoint from ``heldout``), so held-out
comparisons are not tuned on. Every eta sees the same tasks, initial weights and minibatches (the
seeds repeat across the grid: common random numbers). Scores, lower is better:

- ``auc``: the time-averaged loss (mean of the curve), rewarding fast and stable learning;
- ``final``: the mean loss over the last 10% of the steps (at least one point).

A grid value under which any copy diverges scores ``inf``.

::

    from marl_net.config import EnvConfig
    from marl_net.rules.tuning import tune_lr
    best = tune_lr("np", EnvConfig(task="teacher_student"), seeds=range(3), steps=500)
    best.best_lr, best.table()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from marl_net.config import EnvConfig
from marl_net.rules.registry import default_hyper, make_rule
from marl_net.rules.trainer import train

METRICS = ("auc", "final")


def score(curves: torch.Tensor, metric: str) -> torch.Tensor:
    """``curves [..., steps + 1]`` -> one score per curve (lower is better)."""
    if metric == "auc":
        return curves.mean(-1)
    if metric == "final":
        tail = max(1, (curves.shape[-1] - 1) // 10)
        return curves[..., -tail:].mean(-1)
    raise ValueError(f"metric={metric!r} is unknown; choose one of {list(METRICS)}")


def default_grid(name: str, task: str, points: int = 6, param: str = "lr") -> list[float]:
    """``points`` values of ``param`` spaced by 3x around the rule's default (three below, the rest above)."""
    hyper = default_hyper(name, task)
    if param not in hyper or param == "sigma":
        raise ValueError(f"rule {name!r} has step sizes {[k for k in hyper if k != 'sigma']}, not {param!r}")
    return [hyper[param] * 3.0 ** k for k in range(-(points // 2), points - points // 2)]


def lowest(grid: Sequence[float], scores: Sequence[float]) -> float:
    """The value of ``grid`` with the lowest score (the first one on ties; ``inf`` marks a value
    under which a network diverged)."""
    return grid[min(range(len(grid)), key=lambda i: scores[i])]


@dataclass
class TuneResult:
    rule: str
    param: str
    metric: str
    grid: list[float]
    scores: list[float]  # mean over seeds, inf where a copy diverged
    diverged: list[int]  # diverged copies per grid value
    curves: torch.Tensor  # [G, S, steps + 1]

    @property
    def best(self) -> float:
        """The grid value with the lowest score."""
        return lowest(self.grid, self.scores)

    best_lr = best

    def table(self) -> str:
        rows = [f"{self.param:>10}  {self.metric:>10}  diverged"]
        rows += [f"{g:10.4g}  {s:10.4g}  {d}" for g, s, d in zip(self.grid, self.scores, self.diverged)]
        return "\n".join(rows)


def tune_lr(name: str, config: EnvConfig, seeds: Sequence[int], steps: int | None = None,
            grid: Sequence[float] | None = None, metric: str = "auc", device: str = "cpu", param: str = "lr",
            **hyper) -> TuneResult:
    """Pick rule ``name``'s step size ``param`` (``lr``, or Weight Max's ``hidden_lr``) from ``grid``
    on the train split (see the module docstring); ``hyper`` fixes the other hyperparameters."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is unknown; choose one of {list(METRICS)}")
    seeds = [int(s) for s in seeds]
    grid = [float(g) for g in (grid if grid is not None else default_grid(name, config.task, param=param))]
    if not grid or not seeds:
        raise ValueError("tune_lr needs a non-empty grid and at least one seed")
    if param in hyper:
        raise ValueError(f"tune_lr sets {param} from the grid; pass grid=[...] instead of {param}")
    rule = make_rule(name, config.task, **{param: [g for g in grid for _ in seeds]}, **hyper)
    run = train(rule, config.replace(split="train"), seeds * len(grid), steps, device)
    g, s = len(grid), len(seeds)
    curves = run.curves.view(g, s, -1)
    diverged = run.diverged.view(g, s).sum(1)
    scores = score(curves, metric).mean(1)
    scores = torch.where(diverged > 0, torch.full_like(scores, float("inf")), scores)
    return TuneResult(name, param, metric, grid, scores.tolist(), diverged.tolist(), curves)
