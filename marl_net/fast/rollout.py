"""Pieces of vectorized PPO that are plain tensor math: the rollout buffer and per-agent GAE. (The
policy's masked diagonal Gaussian, ``masked_log_prob`` / ``masked_entropy``, lives with the policy
in ``marl_net.policies.synapse_policy``; the RLlib module uses it too.)

Rows are agents of every copy (``N = E * A``); nothing here loops over agents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def minibatch_picks(perm: torch.Tensor, batches: int) -> list[torch.Tensor]:
    """A random permutation ``perm`` of ``L`` samples split into ``batches`` minibatches:
    minibatch ``j`` holds the samples at positions ``[j L // batches, (j + 1) L // batches)`` of
    ``perm``, in ascending order (memory touched front to back). Each sample is labelled with its
    minibatch, then one stable sort of the labels lists every minibatch's samples in order."""
    size = len(perm)
    bounds = [j * size // batches for j in range(batches + 1)]
    counts = [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:])]
    label_type = torch.uint8 if batches <= 256 else torch.int32
    labels = torch.empty(size, dtype=label_type, device=perm.device)
    labels[perm] = torch.repeat_interleave(torch.arange(batches, dtype=label_type, device=perm.device),
                                           torch.tensor(counts, device=perm.device), output_size=size)
    return list(torch.argsort(labels, stable=True).split(counts))
