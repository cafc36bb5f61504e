"""The shared actor-critic with a memory per neuron (``PolicyConfig(memory="gru_neuron")``).

The per-synapse-row memory (``memory="gru"``,
:class:`~marl_net.policies.recurrent_policy.RecurrentSynapsePolicy`) runs a GRU on every synapse
row: on a network of fan K that is K GRU states per neuron, and its learner spends most of its time
in that recurrence. Here every neuron agent carries one state ``[H_m]`` (``H_m = memory_size``),
updated by one GRU cell whose parameters every neuron shares, from the neuron's pooled summary of
its synapses:

- the synapse network is the feed-forward policy's, read the same two ways: each synapse's share of
  the action mean ``a_k = w . mlp(x_k * scale)`` and the masked mean over the agent's synapses
  ``p = mean_k mlp(x_k * scale)`` ``[H]`` (on the CPU one fused kernel,
  :func:`marl_net.policies.fused_layer.synapse_layer`, as :meth:`SynapsePolicy.encode` runs it);
- the GRU cell updates the neuron's state from the summary: ``s' = GRU(p, s)`` (torch's
  ``GRUCell`` parameters and gate equations);
- the state is broadcast to the neuron's synapses: the action mean of synapse k is
  ``(1 + g . s') a_k + c . concat(p, s') + b`` (the state scales every synapse's own proposal, and
  shifts them all; ``g`` starts at zero, so an untrained rule acts as the feed-forward one with a
  state-dependent shift), the critic's value reads ``concat(p, s')``.

Neurons are fewer than synapse rows (8-16-4 outgoing: 24 agents, 192 synapses), and the synapse
network runs once over a whole sequence (no state enters it), so the learner's work is the
feed-forward policy's plus a GRU over ``[T, neurons, H]``. What a per-neuron state cannot hold is
a separate history per synapse (a per-synapse momentum); the accumulator features
(``marl_net.accumulators``) give that cheaply.

The state starts at zero and is set back to zero at every reset of the inner network; callers
carry it as for the per-row policy:

    policy = make_policy(PolicyConfig(num_features=F + 1, memory="gru_neuron", memory_size=16))
    state = policy.initial_state(obs)                   # zeros [N, H_m]
    mean, log_std, value, state = policy(obs, state)    # one step, obs [N, K, F + 1]
    mean, log_std, value, last = policy.unroll(obs_seq, state, starts)   # [T, N, K, F + 1]

Plain torch (plus the fused synapse kernel where it applies), no RLlib types: ``SynapseRLModule``
wraps it as a stateful RLModule (state ``{"h": [H_m]}`` per agent) and the fast path's
``RecurrentPPO`` trains it.
"""

from __future__ import annotations

import torch
from torch import nn

from marl_net.policies.recurrence import gru_shell, run_gru
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy, _mlp


class NeuronMemoryPolicy(nn.Module):
    """The shared actor-critic with a GRU state per neuron (see the module docstring)."""

    recurrent = True

    # One implementation each, shared with the feed-forward policy: observation rows, the mask
    # split, the per-feature input scales, the entropy of the one shared log-std, and the synapse
    # network with its two reads (fused kernel or torch).
    rows = SynapsePolicy.rows
    split = SynapsePolicy.split
    calibrate = SynapsePolicy.calibrate
    entropy = SynapsePolicy.entropy
    encode = SynapsePolicy.encode
    first_layer_weight = SynapsePolicy.first_layer_weight
    deep_layers = SynapsePolicy.deep_layers
    synapse_readout_weight = SynapsePolicy.synapse_readout_weight

    def __init__(self, config: PolicyConfig):
        super().__init__()
        if config.memory != "gru_neuron":
            raise ValueError(f"NeuronMemoryPolicy needs memory='gru_neuron', got {config.memory!r}: "
                             "build policies with make_policy(config)")
        self.config = config
        f, h, m = config.num_features - 1, config.hidden, config.memory_size
        self.synapse_net = _mlp([f] + [h] * config.depth)
        self.memory = nn.GRUCell(h, m)
        # actor_head reads concat(synapse hidden [H], pooled [H], state [H_m]); gain reads the state
        self.actor_head = nn.Linear(2 * h + m, 1)
        self.gain = nn.Linear(m, 1)
        self.critic = nn.Sequential(nn.Linear(h + m, h), nn.Tanh(), nn.Linear(h, 1))
        self.log_std = nn.Parameter(torch.tensor(float(config.init_log_std)))
        self.register_buffer("feature_scale", torch.ones(f))
        with torch.no_grad():
            self.actor_head.weight.mul_(config.action_gain)
            self.actor_head.bias.zero_()
            self.gain.weight.zero_()
            self.gain.bias.zero_()

    @property
    def memory_size(self) -> int:
        return self.config.memory_size

    def initial_state(self, obs: torch.Tensor) -> torch.Tensor:
        """The state at the start of an inner episode for observations ``obs [..., K, F]`` (or flat
        ``[..., K * F]``): zeros ``[..., H_m]``, one per agent."""
        rows = self.rows(obs)
        return rows.new_zeros(*rows.shape[:-2], self.config.memory_size)

    def state_shape(self, fan: int) -> tuple[int, ...]:
        """The state of one agent (any ``fan``): ``(H_m,)``."""
        return (self.config.memory_size,)

    def _encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``obs [..., K, F]`` -> each synapse's share of the mean ``[..., K]``, the pooled summary
        ``[..., H]`` and the mask ``[..., K]``; the leading dimensions are flattened into one for
        the synapse network (the fused kernel takes ``[N, K, F]``)."""
        lead = obs.shape[:-2]
        per_synapse, pooled, mask = self.encode(obs.reshape(-1, *obs.shape[-2:]))
        return per_synapse.view(*lead, -1), pooled.view(*lead, -1), mask.view(*lead, -1)

    def _heads(self, per_synapse: torch.Tensor, pooled: torch.Tensor, state: torch.Tensor, mask: torch.Tensor):
        """Actor mean ``[..., K]``, log-std ``[..., K]`` and value ``[...]`` from each synapse's
        share ``[..., K]``, the pooled summary ``[..., H]`` and the updated state ``[..., H_m]``."""
        z = torch.cat([pooled, state], -1)
        h = self.config.hidden
        per_agent = nn.functional.linear(z, self.actor_head.weight[:, h:], self.actor_head.bias)  # [..., 1]
        mean = (per_synapse * (1.0 + self.gain(state)) + per_agent) * mask
        return mean, self.log_std.expand_as(mean), self.critic(z).squeeze(-1)

    def forward(self, obs: torch.Tensor, state: torch.Tensor):
        """One step: ``obs [N, K, F]`` (or flat), ``state [N, H_m]`` -> action mean ``[N, K]``,
        log-std ``[N, K]``, value ``[N]`` and the new state ``[N, H_m]``."""
        obs = self.rows(obs)
        if state.shape != (*obs.shape[:-2], self.config.memory_size):
            raise ValueError(f"state {tuple(state.shape)} does not fit observations {tuple(obs.shape)}: pass "
                             f"[N, {self.config.memory_size}] (policy.initial_state(obs) at an episode start)")
        per_synapse, pooled, mask = self._encode(obs)
        state = self.memory(pooled, state)
        return (*self._heads(per_synapse, pooled, state, mask), state)

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor | None = None):
        """A sequence: ``obs [T, N, K, F]`` (or flat), the state before its first step ``[N, H_m]``
        and ``starts [T, N]`` (bool; true where a new inner episode begins at step t, so the state
        is zeroed before it) -> mean, log-std ``[T, N, K]``, value ``[T, N]`` and the state after
        the last step. Equals :meth:`forward` called step by step (float rounding).

        The synapse network and the heads run once over the whole sequence, the recurrence as
        torch's multi-step GRU between resets (:func:`marl_net.policies.recurrence.run_gru`).
        Steps padded at a sequence's end (RLlib's, all-zero observations: a zero summary) update
        the state after the real steps only, so the real steps' outputs do not depend on them."""
        obs = self.rows(obs)
        per_synapse, pooled, mask = self._encode(obs)
        states = run_gru(gru_shell(self, self.memory), self.memory, pooled, state, starts)
        mean, log_std, value = self._heads(per_synapse, pooled, states, mask)
        return mean, log_std, value, states[-1]
