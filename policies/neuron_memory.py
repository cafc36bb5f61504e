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
  ``GRUCell`` parameters and gate equations; run by ``marl_net.policies.recurrence``, on the CPU
  through the fused GRU kernel where it applies);
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

from marl_net.policies.recurrence import gru_sequence, gru_step, tanh_via_sigmoid
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

    def _agent_terms(self, pooled: torch.Tensor, state: torch.Tensor):
        """From the pooled summary ``[..., H]`` and the updated state ``[..., H_m]``: the per-agent
        shift of the mean ``[..., 1]``, the gain of the synapses' own shares ``[..., 1]`` and the
        value ``[...]``. The three linear reads of ``concat(pooled, state)`` (the critic's first
        layer, the actor head's per-agent half, the gain, which reads the state only) run as one
        product."""
        h, m = self.config.hidden, self.config.memory_size
        z = torch.cat([pooled, state], -1)
        gain_row = torch.cat([self.gain.weight.new_zeros(1, h), self.gain.weight], 1)
        weight = torch.cat([self.critic[0].weight, self.actor_head.weight[:, h:], gain_row])  # [H + 2, H + H_m]
        bias = torch.cat([self.critic[0].bias, self.actor_head.bias, self.gain.bias])
        hidden, per_agent, gain = nn.functional.linear(z, weight, bias).split([h, 1, 1], -1)
        value = self.critic[2](tanh_via_sigmoid(hidden)).squeeze(-1)
        return per_agent, 1.0 + gain, value

    def _blocks(self, obs: list[torch.Tensor], run) -> tuple[list[tuple], torch.Tensor]:
        """The policy over several blocks of agents at once (``obs[b] [..., N_b, K_b, F]``, the
        same leading dimensions, any fans): the synapse network per block, then the per-agent
        part (``run(pooled [..., sum N_b, H])`` -> the updated states, and the heads) once over
        every block's agents. -> per block (mean, log-std ``[..., N_b, K_b]``, value ``[..., N_b]``)
        and the states ``[..., sum N_b, H_m]``."""
        encoded = [self._encode(self.rows(x)) for x in obs]
        sizes = [p.shape[-2] for _, p, _ in encoded]
        pooled = encoded[0][1] if len(encoded) == 1 else torch.cat([p for _, p, _ in encoded], -2)
        states = run(pooled)
        per_agent, gain, value = self._agent_terms(pooled, states)
        outs = []
        for (per_synapse, _, mask), a, g, v in zip(encoded, per_agent.split(sizes, -2), gain.split(sizes, -2),
                                                   value.split(sizes, -1)):
            mean = torch.addcmul(a, per_synapse, g) * mask
            outs.append((mean, self.log_std.expand_as(mean), v))
        return outs, states

    def _check_state(self, obs: torch.Tensor, state: torch.Tensor) -> None:
        if state.shape != (obs.shape[-3], self.config.memory_size):
            raise ValueError(f"state {tuple(state.shape)} does not fit observations {tuple(obs.shape)}: pass "
                             f"[N, {self.config.memory_size}] (policy.initial_state(obs) at an episode start)")

    def step_blocks(self, obs: list[torch.Tensor], state: list[torch.Tensor]):
        """One step of several blocks of agents (``obs[b] [N_b, K_b, F]``, ``state[b] [N_b, H_m]``;
        one GRU call for all of them) -> per block (mean, log-std ``[N_b, K_b]``, value ``[N_b]``)
        and the new states per block."""
        obs = [self.rows(x) for x in obs]
        for x, s in zip(obs, state):
            self._check_state(x, s)
        sizes = [s.shape[0] for s in state]
        previous = state[0] if len(state) == 1 else torch.cat(state)
        cell = self.memory
        outs, states = self._blocks(obs, lambda pooled: gru_step(
            nn.functional.linear(pooled, cell.weight_ih, cell.bias_ih), previous, cell.weight_hh, cell.bias_hh))
        return outs, list(states.split(sizes))

    def forward(self, obs: torch.Tensor, state: torch.Tensor):
        """One step: ``obs [N, K, F]`` (or flat), ``state [N, H_m]`` -> action mean ``[N, K]``,
        log-std ``[N, K]``, value ``[N]`` and the new state ``[N, H_m]``."""
        ((mean, log_std, value),), (state,) = self.step_blocks([obs], [state])
        return mean, log_std, value, state

    def unroll_blocks(self, obs: list[torch.Tensor], state: list[torch.Tensor],
                      starts: list[torch.Tensor] | None = None):
        """:meth:`unroll` of several blocks of agents over the same steps (``obs[b] [T, N_b, K_b,
        F]``, ``state[b] [N_b, H_m]``, ``starts[b] [T, N_b]``; one GRU recurrence for all of them)
        -> per block (mean, log-std ``[T, N_b, K_b]``, value ``[T, N_b]``) and the states after
        the last step per block."""
        obs = [self.rows(x) for x in obs]
        for x, s in zip(obs, state):
            self._check_state(x[0], s)
        sizes = [s.shape[0] for s in state]
        first = state[0] if len(state) == 1 else torch.cat(state)
        begins = None if starts is None else (starts[0] if len(starts) == 1 else torch.cat(starts, 1))
        outs, states = self._blocks(obs, lambda pooled: gru_sequence(self.memory, pooled, first, begins))
        return outs, list(states[-1].split(sizes))

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor | None = None):
        """A sequence: ``obs [T, N, K, F]`` (or flat), the state before its first step ``[N, H_m]``
        and ``starts [T, N]`` (bool; true where a new inner episode begins at step t, so the state
        is zeroed before it) -> mean, log-std ``[T, N, K]``, value ``[T, N]`` and the state after
        the last step. Equals :meth:`forward` called step by step (float rounding).

        The synapse network and the heads run once over the whole sequence, the recurrence as
        torch's multi-step GRU between resets (:func:`marl_net.policies.recurrence.run_gru`).
        Steps padded at a sequence's end (RLlib's, all-zero observations: a zero summary) update
        the state after the real steps only, so the real steps' outputs do not depend on them."""
        ((mean, log_std, value),), (last,) = self.unroll_blocks([obs], [state], None if starts is None else [starts])
        return mean, log_std, value, last
