"""Evaluate a learned rule: roll a ``SynapsePolicy`` through the batched core and record the inner
loss curve.

:func:`rollout_losses` runs ``episodes`` fresh networks at once (one ``NetworkWeightsCore`` with
E = episodes copies; copy e seeded ``seed_from(seed, e)``), each agent taking the policy's
deterministic action (the Gaussian mean), and returns the inner loss after reset and after each of
the ``max_cycles`` steps: ``[episodes, max_cycles + 1]``. It runs on the core's block layout
(``marl_net.ownership``): the policy is called once per ownership block on that block's rows
``[episodes * agents_b, fan_b, F + 1]``, never on padding, so its cost follows the synapses that
exist. Any ``SynapsePolicy`` (from RLlib, the fast path, or untrained; feed-forward or recurrent,
whose state is carried through the episode from zero, one state per block's rows) and any
``EnvConfig`` work; pass ``split="heldout"`` in the config to
measure generalization to tasks never seen in meta-training. A copy that diverges keeps the loss
it diverged with for the rest of the curve (so a diverging rule shows up, instead of vanishing).

    from marl_net.evaluation import rollout_losses, curve_stats
    losses = rollout_losses(policy, EnvConfig(task="teacher_student", split="heldout"), episodes=32, seed=0)
    mean, std = curve_stats(losses)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from marl_net import seeding
from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore

# obs [N, K, F + 1] -> actions [N, K]; called per ownership block (K = the block's fan, mask all ones)
ActionFn = Callable[[torch.Tensor], torch.Tensor]


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The per-copy seeds :func:`rollout_losses` gives its ``episodes`` networks; pass them to a
    hand rule's trainer to run it on the same tasks, initial weights and minibatches."""
    return [seeding.seed_from(seed, e) for e in range(episodes)]


def policy_means(policy: torch.nn.Module) -> ActionFn:
    """The deterministic action function of a ``SynapsePolicy``: its Gaussian mean. For a recurrent
    policy (``memory="gru"``) the function carries the policy's state from call to call, starting
    at zero: one function per inner episode of the same rows (make a new one after a reset)."""
    if not getattr(policy, "recurrent", False):
        return lambda obs: policy(obs)[0]
    return _StatefulMeans(policy)


class _StatefulMeans:
    """A recurrent policy's means with its state carried across calls (see :func:`policy_means`)."""

    def __init__(self, policy: torch.nn.Module):
        self.policy, self.state = policy, None

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.step(obs)[0]

    def step(self, obs: torch.Tensor):
        """-> mean, log-std ``[N, K]`` and value ``[N]`` for ``obs`` at the next step of the episode."""
        if self.state is None:
            self.state = self.policy.initial_state(obs)
        mean, log_std, value, self.state = self.policy(obs, self.state)
        return mean, log_std, value


def check_policy_fits(policy: torch.nn.Module, config: EnvConfig) -> None:
    expected = len(config.observations) + 1
    got = getattr(getattr(policy, "config", None), "num_features", expected)
    if got != expected:
        raise ValueError(
            f"the policy reads {got} columns per synapse but the env config gives {expected} "
            f"(observations {list(config.observations)} + mask): the policy and env configurations differ in "
            "'observations'; evaluate with the observations it was trained on")


@dataclass
class Rollout:
    """What :func:`rollout` returns: the loss curves, the final weights and the task of every copy."""

    curves: torch.Tensor  # [E, max_cycles + 1]
    params: list[torch.Tensor]  # final weight-space parameters, [E, rows, cols] per layer
    task_ids: list[int]
    seeds: list[int]


def rollout(policy: torch.nn.Module | ActionFn, env_config: EnvConfig, seeds: Sequence[int],
            device: str | torch.device = "cpu") -> Rollout:
    """Run one network per seed (copy e seeded ``seeds[e]``, as a hand rule's trainer seeds it) for
    ``max_cycles`` steps, every agent acting with ``policy`` (a ``SynapsePolicy``, acting with its
    means, or any function obs ``[N, K, F + 1]`` -> ``[N, K]``, which is called once per ownership
    block with that block's rows: ``K`` = the block's fan)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds=[]: pass at least one seed (one network per seed)")
    if isinstance(policy, torch.nn.Module):
        check_policy_fits(policy, env_config)
    core = NetworkWeightsCore(env_config, copies=len(seeds), device=device, layout="blocks", rewards=False)
    core.seed(seeds)
    obs = core.reset()
    # one action function per block: a recurrent policy carries one state per block's rows
    acts = [policy_means(policy) if isinstance(policy, torch.nn.Module) else policy for _ in obs]
    curve = [core.loss.clone()]
    done = torch.zeros(len(seeds), dtype=torch.bool, device=core.device)
    with torch.no_grad():
        for _ in range(env_config.max_cycles):
            actions = [torch.nan_to_num(act(x.flatten(0, 1)).float(), nan=0.0).reshape(x.shape[:3])
                       for act, x in zip(acts, obs)]
            result = core.step(actions)
            curve.append(torch.where(done, curve[-1], result.loss))
            done = done | result.terminated
            obs = result.obs
    return Rollout(torch.stack(curve, dim=1).cpu(), [p.cpu() for p in core.params], [int(t) for t in core.task_ids],
                   seeds)


def rollout_losses(policy: torch.nn.Module | ActionFn, env_config: EnvConfig, episodes: int, seed: int = 0,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """Inner losses ``[episodes, max_cycles + 1]`` of ``episodes`` networks (seeds
    :func:`episode_seeds` of ``seed``) trained by ``policy`` (see :func:`rollout`)."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes!r} must be >= 1")
    return rollout(policy, env_config, episode_seeds(seed, episodes), device).curves


def sample_observations(policy: torch.nn.Module, env_config: EnvConfig, copies: int = 8, seed: int = 0,
                        max_rows: int = 65_536) -> torch.Tensor:
    """Observations ``[N, K, F + 1]`` seen in one episode of ``copies`` networks driven by the
    policy's *stochastic* actions (mean + std * noise), e.g. for ``SynapsePolicy.calibrate``. At most
    ``max_rows`` agent rows are kept, spread evenly over the episode's steps and drawn at random
    within a step, so the sample stays small on networks with thousands of neurons."""
    check_policy_fits(policy, env_config)
    core = NetworkWeightsCore(env_config, copies=copies)
    core.seed([seeding.seed_from(seed, 30_000 + e) for e in range(copies)])
    obs = core.reset()
    e, a, k, f = obs.shape
    per_step = max(1, max_rows // (env_config.max_cycles + 1))
    gen = torch.Generator().manual_seed(int(seed))

    def keep(rows: torch.Tensor) -> torch.Tensor:
        if rows.shape[0] <= per_step:
            return rows
        return rows[torch.randperm(rows.shape[0], generator=gen)[:per_step]]

    seen = [keep(obs.reshape(e * a, k, f))]
    step = policy_means(policy).step if getattr(policy, "recurrent", False) else policy
    with torch.no_grad():
        for _ in range(env_config.max_cycles):
            rows = obs.reshape(e * a, k, f)
            mean, log_std, _ = step(rows)
            actions = (mean + log_std.exp() * torch.randn(mean.shape, generator=gen)) * rows[..., -1]
            obs = core.step(actions.reshape(e, a, k).clamp(-1, 1)).obs
            seen.append(keep(obs.reshape(e * a, k, f)))
    return torch.cat(seen)


def curve_stats(losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over episodes of a ``[episodes, T + 1]`` loss curve."""
    std = losses.std(0, unbiased=False) if losses.shape[0] > 1 else torch.zeros(losses.shape[1])
    return losses.mean(0), std
