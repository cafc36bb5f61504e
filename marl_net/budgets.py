"""How much work the main job does: meta-training iterations, networks, tuning grids, held-out settings.

``default`` is what ``make run`` runs; ``quick`` is a smoke check of the whole pipeline (every
step, smaller). ``marl-net run --budget 0.5`` scales the default's meta-training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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

    def scaled(self, factor: float) -> "Budget":
        if not factor > 0:
            raise ValueError(f"--budget {factor!r}: a scale factor must be positive")
        return replace(self, name=f"{factor:g}x", iterations=max(1, round(self.iterations * factor)))


BUDGETS = {
    "default": Budget("default", iterations=180, copies=64),
    # digits_wide (10-1000-10, 500 updates) is left out of the smoke check: a learned rule on a
    # 1000-unit layer is the slowest part of the suite.
    "quick": Budget("quick", iterations=12, copies=16, eval_episodes=8, tune_seeds=4, tune_points=3,
                    tasks=tuple(t for t in SUITE if t != "digits_wide")),
}


def parse_budget(text: str) -> Budget:
    """``default``, ``quick``, or a factor scaling the default's meta-training (``0.5``, ``2``)."""
    if text in BUDGETS:
        return BUDGETS[text]
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"--budget {text!r}: choose {sorted(BUDGETS)} or a positive scale factor like 0.5") from None
    return BUDGETS["default"].scaled(factor)
