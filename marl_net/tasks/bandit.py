"""A k-armed Bernoulli bandit (RL inner task; see ``marl_net.tasks.rl``).

Instance ``task_id`` draws the arm probabilities ``p ~ U(0, 1)^k`` from a generator seeded with
the task id, so held-out bandits (ids of the held-out split) have arm probabilities no train
bandit has. Pulling arm a pays 1 with probability ``p_a``, else 0 (``u < p_a`` with the step's
uniform). The observation is a constant 1 (the network's input is then that 1, the previous pull
one-hot and the previous reward); the lifetime is the env's ``max_cycles + 1`` pulls (presets
``bandit2`` and ``bandit10`` in ``marl_net.tasks.rl.PRESETS``: 100 pulls).
"""

from __future__ import annotations

from typing import Sequence

import torch

from marl_net import seeding
from marl_net.tasks.base import register_task
from marl_net.tasks.rl import RLTask, State


@register_task("bandit", "RL: k-armed Bernoulli bandit, arm probabilities per task id (arms=2 or 10; 100 pulls)")
class Bandit(RLTask):
    obs_dim = 1
    reward_scale = 1.0

    def __init__(self, input_dim: int | None = None, output_dim: int | None = None, arms: int = 2,
                 baseline_rate: float = 0.1):
        if int(arms) < 2:
            raise ValueError(f"arms={arms!r}: a bandit needs at least 2 arms")
        self.num_actions = int(arms)
        super().__init__(input_dim, output_dim, baseline_rate)

    def arm_probabilities(self, task_ids: Sequence[int]) -> torch.Tensor:
        """``[E, arms]``: each instance's arm probabilities."""
        return seeding.rand(seeding.make_generators(list(task_ids)), (self.num_actions,))

    def start(self, task_ids, uniforms) -> State:
        return {"arm_probs": self.arm_probabilities(task_ids)}

    def observe(self, state: State) -> torch.Tensor:
        return state["prev_reward"].new_ones(*state["prev_reward"].shape, 1)

    def action_values(self, state: State) -> torch.Tensor:
        p = state["arm_probs"]  # [E, arms]: every inner copy of a network copy plays the same bandit
        return p.unsqueeze(1).expand(-1, state["prev_action"].shape[1], -1)

    def transition(self, state: State, actions: torch.Tensor, uniforms: torch.Tensor):
        p = state["arm_probs"].gather(1, actions)  # [E, B]
        return state, (uniforms < p).to(p.dtype)
