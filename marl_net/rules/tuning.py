"""A small step-size tuner: a grid over eta, every (eta, seed) pair as one copy of one batched run.

The project's one step-size tuner: ``marl-net compare --tune``, the main job and ``marl-net eval``
all pick step sizes here, by the same score (:data:`TUNING_METRIC`). A hand rule's step size is
its learning rate (:func:`tune_lr`); a learned rule's is its ``action_scale``, the largest weight
change per step, as a multiple of the one it was meta-trained with (:func:`tune_action_scale`).

Tuning always runs on the ``train`` split (task ids disjoint from ``heldout``), so held-out
comparisons are not tuned on. Every value sees the same tasks, initial weights and minibatches (the
seeds repeat across the grid: common random numbers). Scores, lower is better:

- ``final`` (:data:`TUNING_METRIC`, the default): the mean loss over the last 10% of the steps
  (at least one point): what the held-out comparisons and their targets judge;
- ``auc``: the time-averaged loss (mean of the curve), rewarding fast and stable learning.

A grid value under which any copy diverges scores ``inf``.

A grid is a guess at where the best step size lies: when the best value is the grid's smallest or
largest, the tuner tries the next value past that end, spaced like the grid's last two values, and
goes on until the best value is inside the values tried or :data:`EXTEND` values have been added at
that end (:func:`extend_to_interior`); a result whose best value is still an end says so
(:attr:`TuneResult.at_edge`) and the reports flag it.

::

    from marl_net.config import EnvConfig
    from marl_net.rules.tuning import tune_lr
    best = tune_lr("np", EnvConfig(task="teacher_student"), seeds=range(3), steps=500)
    best.best_lr, best.table()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from marl_net.config import EnvConfig
from marl_net.rules.registry import default_hyper, make_rule
from marl_net.rules.trainer import train

METRICS = ("auc", "final")
TUNING_METRIC = "final"  # how every rule's step size is scored, everywhere
EXTEND = 3  # values a tuning adds past an end of its grid that tuned best, at most, per end


def score(curves: torch.Tensor, metric: str) -> torch.Tensor:
    """``curves [..., steps + 1]`` -> one score per curve (lower is better)."""
    if metric == "auc":
        return curves.mean(-1)
    if metric == "final":
        tail = max(1, (curves.shape[-1] - 1) // 10)
        return curves[..., -tail:].mean(-1)
    raise ValueError(f"metric={metric!r} is unknown; choose one of {list(METRICS)}")


def grid_factors(points: int = 6) -> tuple[float, ...]:
    """The one grid shape every rule's step size is tuned over: ``points`` factors spaced by 3x
    around 1 (``points // 2`` below, the rest from 1 up), e.g. 6: 1/27, 1/9, 1/3, 1, 3, 9."""
    if points < 1:
        raise ValueError(f"points={points!r}: try at least one step size")
    return tuple(3.0 ** k for k in range(-(points // 2), points - points // 2))


def default_grid(name: str, task: str, points: int = 6, param: str = "lr") -> list[float]:
    """``points`` values of ``param``: the rule's default times :func:`grid_factors`."""
    hyper = default_hyper(name, task)
    if param not in hyper or param == "sigma":
        raise ValueError(f"rule {name!r} has step sizes {[k for k in hyper if k != 'sigma']}, not {param!r}")
    return [hyper[param] * f for f in grid_factors(points)]


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

    @property
    def at_edge(self) -> bool:
        """Whether the best value is the smallest or largest value tried (of two or more): the
        best step size may lie outside the values tried."""
        return len(self.grid) > 1 and self.best in (min(self.grid), max(self.grid))

    def table(self) -> str:
        rows = [f"{self.param:>10}  {self.metric:>10}  diverged"]
        rows += [f"{g:10.4g}  {s:10.4g}  {d}" for g, s, d in zip(self.grid, self.scores, self.diverged)]
        return "\n".join(rows)

    def merged(self, other: "TuneResult") -> "TuneResult":
        """This result and ``other`` (more values, the same seeds) as one, values ascending."""
        grid = self.grid + other.grid
        order = sorted(range(len(grid)), key=grid.__getitem__)
        pick = lambda xs: [xs[i] for i in order]  # noqa: E731
        return TuneResult(self.rule, self.param, self.metric, pick(grid), pick(self.scores + other.scores),
                          pick(self.diverged + other.diverged), torch.cat([self.curves, other.curves])[order])


def extend_to_interior(tune: Callable[[list[float]], TuneResult], grid: Sequence[float],
                       extend: int = EXTEND) -> TuneResult:
    """``tune(values)`` over ``grid`` (positive step sizes), then, while the best value is the
    smallest (largest) tried, over the next value below (above) it, spaced by the ratio of the two
    values at that end (3 for a one-value grid), at most ``extend`` values per end. Every value
    is scored on the same seeds, so the result is the one a grid of all the values tried gives."""
    grid = sorted(float(g) for g in grid)
    if not grid or grid[0] <= 0:
        raise ValueError(f"grid={grid}: tune over positive step sizes")
    result = tune(grid)
    for end in (0, -1):
        for _ in range(extend):
            values = result.grid
            if len(values) > 1 and result.best != values[end]:
                break
            if len(values) == 1:
                ratio = 3.0
            else:
                ratio = values[1] / values[0] if end == 0 else values[-1] / values[-2]
            result = result.merged(tune([values[0] / ratio if end == 0 else values[-1] * ratio]))
    return result


def tune_lr(name: str, config: EnvConfig, seeds: Sequence[int], steps: int | None = None,
            grid: Sequence[float] | None = None, metric: str = TUNING_METRIC, device: str = "cpu", param: str = "lr",
            extend: int = EXTEND, **hyper) -> TuneResult:
    """Pick rule ``name``'s step size ``param`` (``lr``, or Weight Max's ``hidden_lr``) from ``grid``,
    extended past an end that tunes best by up to ``extend`` values (:func:`extend_to_interior`),
    on the train split (see the module docstring); ``hyper`` fixes the other hyperparameters."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is unknown; choose one of {list(METRICS)}")
    seeds = [int(s) for s in seeds]
    grid = [float(g) for g in (grid if grid is not None else default_grid(name, config.task, param=param))]
    if not grid or not seeds:
        raise ValueError("tune_lr needs a non-empty grid and at least one seed")
    if param in hyper:
        raise ValueError(f"tune_lr sets {param} from the grid; pass grid=[...] instead of {param}")

    def scored(values: list[float]) -> TuneResult:
        rule = make_rule(name, config.task, **{param: [g for g in values for _ in seeds]}, **hyper)
        run = train(rule, config.replace(split="train"), seeds * len(values), steps, device)
        g, s = len(values), len(seeds)
        curves = run.curves.view(g, s, -1)
        diverged = run.diverged.view(g, s).sum(1)
        scores = score(curves, metric).mean(1)
        scores = torch.where(diverged > 0, torch.full_like(scores, float("inf")), scores)
        return TuneResult(name, param, metric, values, scores.tolist(), diverged.tolist(), curves)

    return extend_to_interior(scored, grid, extend)


def scale_factors(points: int = 6) -> tuple[float, ...]:
    """A learned rule's ``action_scale`` factors (multiples of the one it was meta-trained with):
    the hand rules' grid shape, :func:`grid_factors`, so every rule is tuned alike."""
    return grid_factors(points)


def tune_action_scale(policy, config: EnvConfig, seeds: Sequence[int], factors: Sequence[float] | None = None,
                      metric: str = TUNING_METRIC, device: str = "cpu", extend: int = EXTEND) -> TuneResult:
    """Pick a learned rule's ``action_scale`` as ``config.action_scale`` times one of ``factors``
    (extended as :func:`tune_lr` extends its grid), on the train split of ``config``, as
    :func:`tune_lr` picks a hand rule's step size (the same seeds for every value; ``inf`` where a
    network diverged). The policy itself is fixed."""
    from marl_net.evaluation import rollout

    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is unknown; choose one of {list(METRICS)}")
    seeds = [int(s) for s in seeds]
    factors = [float(f) for f in (factors if factors is not None else scale_factors())]
    if not factors or not seeds:
        raise ValueError("tune_action_scale needs a non-empty grid of factors and at least one seed")

    def scored(grid: list[float]) -> TuneResult:
        curves, diverged = [], []
        for scale in grid:
            trial = config.replace(split="train", action_scale=scale)
            c = rollout(policy, trial, seeds, device).curves
            curves.append(c)
            diverged.append(int((~torch.isfinite(c) | (c.abs() > trial.divergence_threshold)).any(-1).sum()))
        curves_t = torch.stack(curves)
        scores = score(curves_t, metric).mean(1)
        scores = torch.where(torch.tensor(diverged) > 0, torch.full_like(scores, float("inf")), scores)
        return TuneResult("learned", "action_scale", metric, grid, scores.tolist(), diverged, curves_t)

    return extend_to_interior(scored, [config.action_scale * f for f in factors], extend)
