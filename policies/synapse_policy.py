"""The shared per-neuron actor-critic: one set of parameters for every neuron (a learning rule).

It is factorized per synapse, as in VSML: one small network is applied to every synapse row of
an agent's observation ``[K, F]`` (features, then the padding mask), so the same parameters run on
a network of any width. A masked mean over the agent's synapses gives the neuron a summary of its
own synapses, which both heads see:

- actor: per synapse, the mean of a Gaussian weight change (and one learned log-std shared by
  all synapses);
- critic: per agent, a value from the pooled synapse summary.

Plain torch, no RLlib types: the RLlib RLModule (``marl_net.policies.rllib_module``) and the fast
path both wrap this same module, so a rule trained on either path loads in the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PolicyConfig:
    num_features: int  # F: columns of an observation row, the padding mask (last) included
    hidden: int = 64
    depth: int = 2  # hidden layers of the per-synapse network
    init_log_std: float = -1.0
    action_gain: float = 0.01  # scale of the actor head at init: small weight changes at first

    def __post_init__(self):
        if self.num_features < 2:
            raise ValueError(f"num_features={self.num_features!r}: need at least one feature plus the mask column")
        if self.hidden < 1 or self.depth < 1:
            raise ValueError("hidden and depth must be positive integers")

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers)


class SynapsePolicy(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        f, h = config.num_features - 1, config.hidden
        self.synapse_net = _mlp([f] + [h] * config.depth)
        self.actor_head = nn.Linear(2 * h, 1)
        self.critic = nn.Sequential(nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
        self.log_std = nn.Parameter(torch.tensor(float(config.init_log_std)))
        # Per-feature input scale (1 / typical magnitude), set by :meth:`calibrate` from sample
        # observations and saved with the parameters, so features of any scale reach the network
        # at unit scale.
        self.register_buffer("feature_scale", torch.ones(f))
        with torch.no_grad():
            self.actor_head.weight.mul_(config.action_gain)
            self.actor_head.bias.zero_()

    def split(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [N, K * F]`` or ``[N, K, F]`` -> features ``[N, K, F - 1]`` and mask ``[N, K]``."""
        f = self.config.num_features
        if obs.shape[-1] != f:
            if obs.shape[-1] % f:
                raise ValueError(f"observation width {obs.shape[-1]} is not a multiple of num_features={f}")
            obs = obs.reshape(*obs.shape[:-1], obs.shape[-1] // f, f)
        return obs[..., :-1], obs[..., -1]

    @torch.no_grad()
    def calibrate(self, obs: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
        """Set the input scale of each feature to 1 / its root mean square over the real synapses
        of ``obs`` (a batch of observations). Features that are always ~0 keep scale 1."""
        feats, mask = self.split(obs)
        feats, mask = feats.reshape(-1, feats.shape[-1]), mask.reshape(-1) > 0
        rms = feats[mask].pow(2).mean(0).sqrt()
        self.feature_scale.copy_(torch.where(rms > floor, 1.0 / rms.clamp(min=floor), torch.ones_like(rms)))
        return self.feature_scale

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats, mask = self.split(obs)
        h = self.synapse_net(feats * self.feature_scale)  # [N, K, H]
        pooled = (h * mask.unsqueeze(-1)).sum(-2) / mask.sum(-1, keepdim=True).clamp(min=1.0)
        return h, pooled, mask

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> action mean ``[N, K]``, log-std ``[N, K]``, value ``[N]``."""
        h, pooled, mask = self.encode(obs)
        # actor_head on concat(h, pooled), computed as two products without materializing the
        # concatenation ([N, K, 2H]): the same values, half the memory traffic (fast path hot loop).
        w, hidden = self.actor_head.weight, h.shape[-1]
        per_synapse = nn.functional.linear(h, w[:, :hidden]).squeeze(-1)  # [N, K]
        per_agent = nn.functional.linear(pooled, w[:, hidden:], self.actor_head.bias)  # [N, 1]
        mean = (per_synapse + per_agent) * mask
        log_std = self.log_std.expand_as(mean)
        value = self.critic(pooled).squeeze(-1)
        return mean, log_std, value

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        _, pooled, _ = self.encode(obs)
        return self.critic(pooled).squeeze(-1)
