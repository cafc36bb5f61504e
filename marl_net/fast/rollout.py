"""Pieces of vectorized PPO that are plain tensor math: the rollout buffer, per-agent GAE, and the
masked diagonal Gaussian of the shared synapse policy.

Rows are agents of every copy (``N = E * A``); nothing here loops over agents. Padding synapse
slots (``mask == 0``) are excluded from log-probabilities and entropies: an agent with fan 4 in a
network whose largest fan is 16 acts in 4 dimensions, not 16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def masked_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-density ``[N]`` of ``actions [N, K]`` under ``N(mean, exp(log_std)^2)``, summed over the
    real synapse slots only (``mask [N, K]``, 1 for a real synapse)."""
    z = (actions - mean) * torch.exp(-log_std)
    per_slot = -0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI
    return (per_slot * mask).sum(-1)


def masked_entropy(log_std: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy ``[N]`` of the Gaussian over the real synapse slots."""
    return ((0.5 + _LOG_SQRT_2PI + log_std) * mask).sum(-1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    ends: torch.Tensor,
    end_values: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation per agent, all agents at once.

    ``rewards, values [T, N]``; ``ends [T, N]`` (bool) marks the step that ended an episode (after
    which the env reset the copy); ``end_values [T, N]`` is the value to bootstrap from at such a
    step: ``V(final obs)`` when the episode was truncated at ``max_cycles``, 0 when it terminated
    (diverged). ``next_value [N]`` is ``V`` of the observation after the last step. Returns
    advantages and returns ``[T, N]``.
    """
    steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        following = next_value if t == steps - 1 else values[t + 1]
        ended = ends[t].to(rewards.dtype)
        boot = torch.where(ends[t], end_values[t], following)
        delta = rewards[t] + gamma * boot - values[t]
        last = delta + gamma * lam * (1.0 - ended) * last
        adv[t] = last
    return adv, adv + values


@dataclass
class Rollout:
    """``T`` steps of ``N = E * A`` agent rows, preallocated on ``device``. Observations and
    actions are kept per ownership block with the padding trimmed (``blocks`` as in
    ``marl_net.ownership``): block b's tensors have ``E * agents_of_b`` rows of ``fan_b`` slots, in
    (copy, agent) order."""

    obs: list[torch.Tensor]  # per block [T, E * n_b, fan_b, F + 1]
    actions: list[torch.Tensor]  # per block [T, E * n_b, fan_b]
    logp: torch.Tensor  # [T, N]
    values: torch.Tensor  # [T, N]
    rewards: torch.Tensor  # [T, N]
    ends: torch.Tensor  # [T, N] bool
    end_values: torch.Tensor  # [T, N]

    @classmethod
    def allocate(cls, steps: int, copies: int, blocks, num_features: int, device) -> "Rollout":
        f32 = dict(dtype=torch.float32, device=device)
        rows = copies * sum(b.stop - b.start for b in blocks)
        return cls(
            obs=[torch.zeros(steps, copies * (b.stop - b.start), b.fan, num_features, **f32) for b in blocks],
            actions=[torch.zeros(steps, copies * (b.stop - b.start), b.fan, **f32) for b in blocks],
            logp=torch.zeros(steps, rows, **f32),
            values=torch.zeros(steps, rows, **f32),
            rewards=torch.zeros(steps, rows, **f32),
            ends=torch.zeros(steps, rows, dtype=torch.bool, device=device),
            end_values=torch.zeros(steps, rows, **f32),
        )
