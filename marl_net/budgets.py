"""How much work the main job does: meta-training iterations, networks, tuning grids, held-out settings.

``default`` is what ``make run`` runs; ``quick`` is a smoke check of the whole pipeline (every
step, smaller). ``marl-net run --budget 0.5`` scales the default's meta-training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from marl_net.suite import SUITE


@dataclass(frozen=True)
class Budget:
    name: str
    iterations: int  # PPO iterations of meta-training, per level
    copies: int = 32  # network copies per PPO iteration
    eval_episodes: int = 64  # held-out networks per setting and rule
    tune_seeds: int = 8  # train-split networks per step size when tuning a rule
    tune_points: int = 6  # step sizes tried per rule
    restarts: int = 1  # independent meta-trainings per level; the best on the train split is evaluated
    tasks: tuple[str, ...] = tuple(SUITE)  # the held-out settings evaluated
    # Per-setting changes of eval_episodes, tune_seeds and tune_points (the costly settings:
    # a learned rule's held-out run and every tuning run are 500 updates of a wide network).
    per_setting: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def __post_init__(self):
        if self.restarts < 1:
            raise ValueError(f"restarts={self.restarts!r}: meta-train at least once (--restarts 1 or more)")
        if self.iterations < 1 or self.copies < 1 or self.eval_episodes < 1 or self.tune_seeds < 1 \
                or self.tune_points < 1:
            raise ValueError(f"budget {self.name!r}: iterations, copies, eval_episodes, tune_seeds and tune_points "
                             "must be positive")
        unknown = [t for t in self.tasks if t not in SUITE]
        if unknown or not self.tasks:
            raise ValueError(f"budget {self.name!r}: held-out settings {unknown or '(none)'} are unknown; choose "
                             f"from {list(SUITE)}, e.g. --tasks teacher_student,teacher_student_wide")

        for task, changes in self.per_setting.items():
            bad = [k for k in changes if k not in SETTING_KEYS]
            if task not in SUITE or bad or not all(int(v) >= 1 for v in changes.values()):
                raise ValueError(f"budget {self.name!r}: per_setting[{task!r}] = {dict(changes)}: name a setting of "
                                 f"{list(SUITE)} and positive {list(SETTING_KEYS)}")

    def for_setting(self, task: str) -> dict[str, int]:
        """``{"eval_episodes", "tune_seeds", "tune_points"}`` on held-out setting ``task``."""
        return {k: int(self.per_setting.get(task, {}).get(k, getattr(self, k))) for k in SETTING_KEYS}

    def scaled(self, factor: float) -> "Budget":
        if not factor > 0:
            raise ValueError(f"--budget {factor!r}: a scale factor must be positive, e.g. 0.5 or 3 (or 'quick')")
        return replace(self, name=f"{factor:g}x", iterations=max(1, round(self.iterations * factor)))


SETTING_KEYS = ("eval_episodes", "tune_seeds", "tune_points")
# The wide classification settings: a learned rule runs 500 updates on 6,400 (mnist1d) and 20,000
# (digits_wide) synapses per network, every step size tried sequentially; fewer networks there keep
# `make run` near its 15 minutes on 2 cores. Every rule gets the same networks and grid sizes.
WIDE = {"digits_wide": {"eval_episodes": 16, "tune_seeds": 4, "tune_points": 4},
        "mnist1d": {"eval_episodes": 32, "tune_seeds": 4, "tune_points": 4}}
BUDGETS = {
    "default": Budget("default", iterations=180, copies=64, per_setting=WIDE),
    # digits_wide (10-1000-10, 500 updates) is left out of the smoke check: a learned rule on a
    # 1000-unit layer is the slowest part of the suite.
    "quick": Budget("quick", iterations=12, copies=16, eval_episodes=8, tune_seeds=4, tune_points=3,
                    tasks=tuple(t for t in SUITE if t != "digits_wide"),
                    per_setting={"mnist1d": {"eval_episodes": 4, "tune_seeds": 2, "tune_points": 2}}),
}


def parse_budget(text: str, budgets: Mapping[str, Any] | None = None):
    """``default``, ``quick``, or a factor scaling the default's meta-training (``0.5``, ``2``), from
    ``budgets`` (a name -> budget table with a ``"default"`` entry that has ``scaled``; the ladder's
    :data:`BUDGETS` when None)."""
    budgets = BUDGETS if budgets is None else budgets
    if text in budgets:
        return budgets[text]
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"--budget {text!r}: choose {sorted(budgets)} or a positive scale factor like 0.5") from None
    if not math.isfinite(factor):
        raise ValueError(f"--budget {text!r}: a scale factor must be a finite positive number like 0.5 or 3")
    return budgets["default"].scaled(factor)
