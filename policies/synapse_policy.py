"""The shared per-neuron actor-critic: one set of parameters for every neuron (a learning rule).

It is factorized per synapse, as in VSML: one small network is applied to every synapse row of
an agent's observation ``[K, F]`` (features, then the padding mask), so the same parameters run on
a network of any width. A masked mean over the agent's synapses gives the neuron a summary of its
own synapses, which both heads see:

- actor: per synapse, the mean of a Gaussian weight change (and one learned log-std shared by
  all synapses);
- critic: per agent, a value from the pooled synapse summary.

It takes a network's agents in either layout of ``marl_net.ownership``: padded to the largest fan
(``[N, K, F]``, the RLlib path and the PettingZoo env) or one ownership block at a time
(``[N_b, fan_b, F]``, no padding: the fast path and evaluation; :meth:`SynapsePolicy.forward_blocks`).
A block's mask column is all ones, so its pooled summary is the plain mean over the block's fan;
the same parameters give the same means and values either way, to float rounding
(``tests/test_synapse_policy.py``).

Plain torch, no RLlib types: the RLlib RLModule (``marl_net.policies.rllib_module``) and the fast
path both wrap this same module, so a rule trained on either path loads in the other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

from marl_net.policies import fused_actor_critic, fused_layer
from marl_net.validation import check_field_types


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# The policy's action distribution: a diagonal Gaussian over the agent's real synapse slots only
# (an agent with fan 4 in a network whose largest fan is 16 acts in 4 dimensions, not 16). Both
# training paths use these two functions (the RLlib module through MaskedDiagGaussian).
def masked_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-density ``[N]`` of ``actions [N, K]`` under ``N(mean, exp(log_std)^2)``, summed over the
    real synapse slots only (``mask [N, K]``, 1 for a real synapse)."""
    z = (actions - mean) * torch.exp(-log_std)
    per_slot = -0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI
    return (per_slot * mask).sum(-1)


def masked_entropy(log_std: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy ``[N]`` of the Gaussian over the real synapse slots."""
    return (_slot_entropy(log_std) * mask).sum(-1)


def _slot_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """The entropy of one synapse slot's Gaussian."""
    return 0.5 + _LOG_SQRT_2PI + log_std


MEMORY_CHOICES = ("none", "gru", "gru_neuron")


@dataclass(frozen=True)
class PolicyConfig:
    num_features: int  # F: columns of an observation row, the padding mask (last) included
    hidden: int = 64
    depth: int = 2  # hidden layers of the per-synapse network
    init_log_std: float = -1.0
    action_gain: float = 0.01  # scale of the actor head at init: small weight changes at first
    # "none": this feed-forward policy; "gru": a GRU cell per synapse row whose state lasts the inner
    # episode (marl_net.policies.recurrent_policy.RecurrentSynapsePolicy); "gru_neuron": a GRU cell
    # per neuron fed its synapses' pooled summary (marl_net.policies.neuron_memory.NeuronMemoryPolicy,
    # cheaper); make_policy picks the class
    memory: str = "none"
    memory_size: int = 16  # H of the GRU state per synapse row ("gru") or per neuron ("gru_neuron")

    def __post_init__(self):
        check_field_types(self)
        if self.num_features < 2:
            raise ValueError(f"num_features={self.num_features!r}: need at least one feature plus the mask column")
        if self.hidden < 1 or self.depth < 1:
            raise ValueError("hidden and depth must be positive integers")
        if self.memory not in MEMORY_CHOICES:
            raise ValueError(f"memory={self.memory!r}: choose one of {list(MEMORY_CHOICES)}")
        if self.memory_size < 1:  # (its type is checked above)
            raise ValueError(f"memory_size={self.memory_size!r}: pass an integer >= 1 (the GRU state's width)")

    def to_dict(self) -> dict:
        return asdict(self)


POLICY_SETTINGS = tuple(f.name for f in fields(PolicyConfig) if f.name != "num_features")


def check_policy_settings(settings: Mapping[str, Any]) -> None:
    """Refuse names that are not :class:`PolicyConfig` settings (``num_features`` follows from the env)."""
    unknown = sorted(set(settings) - set(POLICY_SETTINGS))
    if unknown:
        raise ValueError(f"unknown policy settings {unknown}; valid ones are {sorted(POLICY_SETTINGS)} "
                         "(num_features follows from the env)")


class _Readout(torch.autograd.Function):
    """The two reads of the per-synapse hidden ``h [N, K, H]``: ``h @ w`` (each synapse's share of
    the action mean, ``[N, K]``) and the weighted sum over the synapses ``sum_k weights * h``
    (the pooled summary, ``[N, H]``). Its backward builds ``dL/dh`` from both outputs in two passes;
    autograd would run an outer-product matmul, a broadcast multiply and an add (the fast path's
    learner spends most of its time on ``[N, K, H]`` tensors)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, weights: torch.Tensor):
        ctx.save_for_backward(h, w, weights)
        return torch.matmul(h, w), (h * weights.unsqueeze(-1)).sum(-2)

    @staticmethod
    def backward(ctx, grad_synapse: torch.Tensor, grad_pooled: torch.Tensor):
        h, w, weights = ctx.saved_tensors
        grad_h = torch.addcmul(grad_synapse.unsqueeze(-1) * w, weights.unsqueeze(-1), grad_pooled.unsqueeze(-2))
        grad_w = torch.mv(h.reshape(-1, h.shape[-1]).t(), grad_synapse.reshape(-1)) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w, None


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers)


class SynapsePolicy(nn.Module):
    recurrent = False  # the recurrent policies (memory="gru", "gru_neuron") carry a state from step to step

    def __init__(self, config: PolicyConfig):
        super().__init__()
        if config.memory != "none":
            raise ValueError(f"memory={config.memory!r} is the recurrent policy: build it with "
                             "marl_net.policies.recurrent_policy.make_policy(config)")
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

    def rows(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs [N, K * F]`` or ``[N, K, F]`` -> the synapse rows ``[N, K, F]``."""
        f = self.config.num_features
        if obs.shape[-1] == f:
            return obs
        if obs.shape[-1] % f:
            raise ValueError(f"observation width {obs.shape[-1]} is not a multiple of num_features={f}")
        return obs.reshape(*obs.shape[:-1], obs.shape[-1] // f, f)

    def split(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [N, K * F]`` or ``[N, K, F]`` -> features ``[N, K, F - 1]`` and mask ``[N, K]``."""
        obs = self.rows(obs)
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

    def first_layer_weight(self) -> torch.Tensor:
        """The first synapse layer as one ``[H, F]`` matrix over a whole observation row: the
        feature weights times the feature scales, then the bias as the weight of the mask column
        (1 on a real synapse). One product gives ``W (x * scale) + b`` on real synapses and 0 on
        padding (all-zero rows), with no copy of the features, no scaling pass and no bias pass."""
        first = self.synapse_net[0]
        return torch.cat([first.weight * self.feature_scale, first.bias.unsqueeze(1)], 1)

    def deep_layers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The synapse network's layers after the first, stacked: weights ``[depth - 1, H, H]``
        (torch's ``(out, in)`` layout) and biases ``[depth - 1, H]`` (both empty for one layer)."""
        linears = list(self.synapse_net)[2::2]
        if not linears:
            first = self.synapse_net[0].weight
            h = self.config.hidden
            return first.new_empty(0, h, h), first.new_empty(0, h)
        return torch.stack([m.weight for m in linears]), torch.stack([m.bias for m in linears])

    def synapse_readout_weight(self) -> torch.Tensor:
        """The actor head's weights ``[H]`` on a synapse's own hidden units (each synapse's share of
        the action mean; the head's other half reads the pooled summary)."""
        return self.actor_head.weight[0, : self.config.hidden]

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> each synapse's share of the action mean ``[N, K]`` (before the per-agent term), the
        masked mean of the per-synapse hidden over the agent's synapses ``pooled [N, H]``, and the
        mask ``[N, K]``."""
        obs = self.rows(obs)
        mask = obs[..., -1]
        weights = mask / mask.sum(-1, keepdim=True).clamp(min=1.0)
        # actor_head on concat(h, pooled) is split into its per-synapse and per-agent products, so
        # the concatenation [N, K, 2H] is never built
        w_synapse = self.synapse_readout_weight()
        if fused_layer.applies(obs, self.config.hidden, w_synapse.dtype, self.config.depth):  # one CPU kernel
            per_synapse, pooled = fused_layer.synapse_layer(obs, self.first_layer_weight().T, w_synapse, weights,
                                                            *self.deep_layers())
            return per_synapse, pooled, mask
        h = torch.tanh(torch.matmul(obs, self.first_layer_weight().T))  # [N, K, H]
        for layer in list(self.synapse_net)[2:]:
            h = layer(h)
        per_synapse, pooled = _Readout.apply(h, w_synapse, weights)
        return per_synapse, pooled, mask

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> action mean ``[N, K]``, log-std ``[N, K]``, value ``[N]``."""
        per_synapse, pooled, mask = self.encode(obs)
        hidden = pooled.shape[-1]
        per_agent = nn.functional.linear(pooled, self.actor_head.weight[:, hidden:], self.actor_head.bias)  # [N, 1]
        mean = (per_synapse + per_agent) * mask
        log_std = self.log_std.expand_as(mean)
        value = self.critic(pooled).squeeze(-1)
        return mean, log_std, value

    def forward_blocks(self, blocks) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """:meth:`forward` on the block layout: ``blocks`` holds one ownership block's rows
        ``[N_b, fan_b, F]`` each (e.g. ``VectorNetworkEnv(..., layout="blocks")``'s observations);
        returns per block the action mean and log-std ``[N_b, fan_b]`` and the value ``[N_b]``.
        One call per block (agents of one layer share a fan), none per agent."""
        return [self(x) for x in blocks]

    def log_prob_entropy_value(self, obs: torch.Tensor, actions: torch.Tensor, index: torch.Tensor):
        """What PPO's loss needs for the agents ``index [n]`` of ``obs [S, K, F]`` that took
        ``actions [S, K]``: the log-density of their actions, the entropy and the value, each
        ``[n]``. On the CPU the policy runs as one fused kernel that reads the rows by index
        (``fused_actor_critic``, where it applies); otherwise the rows are gathered and run
        through :meth:`forward`."""
        if fused_actor_critic.applies(self, obs):
            logp, value, real = fused_actor_critic.log_prob_and_value(self, obs, actions, index)
            return logp, self.entropy(real), value
        obs, actions = obs.index_select(0, index), actions.index_select(0, index)
        mean, log_std, value = self(obs)
        mask = obs[..., -1]
        return masked_log_prob(actions, mean, log_std, mask), masked_entropy(log_std, mask), value

    def entropy(self, real: torch.Tensor) -> torch.Tensor:
        """The action distribution's entropy for agents with ``real [n]`` real synapses
        (:func:`masked_entropy` summed over them: one log-std for every synapse)."""
        return real * _slot_entropy(self.log_std)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        _, pooled, _ = self.encode(obs)
        return self.critic(pooled).squeeze(-1)
