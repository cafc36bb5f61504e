"""Counting the matmul FLOPs of the fast path, and measuring the machine's torch matmul rate.

How FLOPs are counted (a multiply-add is 2 FLOPs; only matrix products count, elementwise work
such as tanh, Adam or the loss is left out, so the figure is a lower bound of the work done):

- Policy forward, per agent: every real synapse slot (the fast path trims the padding up to the
  largest fan, see ``FastPPO._act``) goes through the per-synapse MLP, ``F -> H -> ... -> H``
  (``depth`` layers), and the actor head ``2H -> 1``; the critic runs once per agent on the pooled
  summary, ``H -> H -> 1``.
- Policy backward: twice the forward (gradients with respect to weights and to inputs).
- Network core, per copy and step: the forward pass of the inner network on the minibatch
  (``2 B sum_l n_l n_{l+1}``) and the pre/post correlation feature when observed (one more
  product of the same size).
- One fast-PPO iteration of ``S`` agent-steps: ``S`` policy forwards while collecting, plus
  ``num_epochs * S`` forward-and-backward passes while learning, plus the core's steps.
"""

from __future__ import annotations

import statistics
import time

import torch

from marl_net.config import EnvConfig
from marl_net.ownership import Ownership
from marl_net.policies.synapse_policy import PolicyConfig


def policy_forward_flops(policy: PolicyConfig, slots: int, agents: int) -> int:
    """Matmul FLOPs of one policy forward over ``agents`` agents owning ``slots`` synapses in all."""
    f, h = policy.num_features - 1, policy.hidden
    per_slot = 2 * (f * h + (policy.depth - 1) * h * h) + 2 * (2 * h)
    critic = 2 * (h * h + h)
    return slots * per_slot + agents * critic


def core_step_flops(env: EnvConfig) -> int:
    """Matmul FLOPs of one core step of one network copy."""
    weights = sum(a * b for a, b in zip(env.layers[:-1], env.layers[1:]))
    products = 1 + int("pre_post_corr" in env.observations)
    return 2 * env.batch_size * weights * products


def fast_ppo_iteration_flops(env: EnvConfig, policy: PolicyConfig, copies: int, steps: int, num_epochs: int) -> int:
    """Matmul FLOPs of one fast-PPO iteration (collection plus learning)."""
    own = Ownership(env.network_spec(), env.ownership)
    fwd = policy_forward_flops(policy, int(own.mask.sum()), own.num_agents)  # one copy's agents, one step
    return copies * steps * (fwd * (1 + 3 * num_epochs) + core_step_flops(env))


def matmul_flops_per_s(device: str | torch.device = "cpu", size: int = 2048, repeats: int = 5) -> float:
    """The median rate of a ``size x size`` float32 torch matmul on ``device`` (FLOP/s)."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    rates = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call warms up
            rates.append(2 * size**3 / (time.perf_counter() - start))
    return statistics.median(rates)
