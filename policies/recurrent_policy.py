"""The shared per-neuron actor-critic with memory: a GRU per synapse row (``PolicyConfig(memory="gru")``).

The feed-forward :class:`~marl_net.policies.synapse_policy.SynapsePolicy` sees one step of
history. Here, as in VSML, every synapse row of an agent's observation ``[K, F]`` also carries a
state ``[K, H_m]`` (``H_m = memory_size``), updated by one GRU cell whose parameters every synapse of
every neuron shares:

- the synapse network embeds the row's features: ``e = mlp(features * scale)`` ``[K, H]``
  (the same network as the feed-forward policy's);
- the GRU cell updates the row's state: ``s' = GRU(e, s)`` (torch's ``GRUCell`` parameters and
  gate equations), kept at zero on padding slots;
- both heads read ``z = concat(e, s')``: the actor's mean per synapse from ``z`` and the masked
  mean of ``z`` over the agent's synapses, the critic's value from that mean.

The state starts at zero and is set back to zero at every reset of the inner network (a new inner
episode); it lasts the inner episode. Callers carry it:

    policy = make_policy(PolicyConfig(num_features=F + 1, memory="gru", memory_size=16))
    state = policy.initial_state(obs)                   # zeros [N, K, H_m]
    mean, log_std, value, state = policy(obs, state)    # one step, obs [N, K, F + 1]
    state = reset_rows(state, ended_rows)               # zero the rows whose network was reset

and :meth:`RecurrentSynapsePolicy.unroll` runs whole sequences ``[T, N, ...]`` at once (the
per-step synapse network and heads batched over time, the GRU recurrence one ``nn.GRU`` call
between resets), as PPO's learner and the RLlib module's training forward do.

The recurrent policy runs on torch only: the fused CPU kernels (``fused_layer``,
``fused_actor_critic``) implement the feed-forward policy, and ``fused_actor_critic.applies``
answers False for this one. Plain torch, no RLlib types: ``SynapseRLModule`` wraps it as a
stateful RLModule, the fast path's recurrent PPO (``marl_net.fast.recurrent_ppo``) trains it, and
the same state dict loads on either path.

``memory="gru_neuron"`` is the cheaper variant, a state per neuron instead of per synapse row
(:class:`~marl_net.policies.neuron_memory.NeuronMemoryPolicy`); :func:`make_policy` builds either.
The recurrence itself (resets, the GRU update, ``nn.GRU`` over stretches between resets) is
``marl_net.policies.recurrence``, shared by both.
"""

from __future__ import annotations

import torch
from torch import nn

from marl_net.policies.neuron_memory import NeuronMemoryPolicy
from marl_net.policies.recurrence import gru_shell, gru_update, reset_rows, run_gru
from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy, _mlp

__all__ = ["RecurrentSynapsePolicy", "NeuronMemoryPolicy", "make_policy", "gru_update", "reset_rows"]


def make_policy(config: PolicyConfig) -> "SynapsePolicy | RecurrentSynapsePolicy | NeuronMemoryPolicy":
    """The policy ``config`` asks for: :class:`SynapsePolicy` (``memory="none"``, the default; the
    same parameters and draws as building it directly), :class:`RecurrentSynapsePolicy`
    (``"gru"``: a state per synapse row) or :class:`NeuronMemoryPolicy` (``"gru_neuron"``: a state
    per neuron)."""
    if config.memory == "gru":
        return RecurrentSynapsePolicy(config)
    if config.memory == "gru_neuron":
        return NeuronMemoryPolicy(config)
    return SynapsePolicy(config)


class RecurrentSynapsePolicy(nn.Module):
    """The shared actor-critic with a per-synapse GRU state (see the module docstring)."""

    recurrent = True
    # False: unroll steps the GRU update one step at a time, as it did before it ran nn.GRU (the
    # fallback's way; experiments/recurrent_speed.py's side-by-side "before" row)
    sequence_recurrence = True

    # One implementation each, shared with the feed-forward policy: observation rows, the mask
    # split, the per-feature input scales, the entropy of the one shared log-std.
    rows = SynapsePolicy.rows
    split = SynapsePolicy.split
    calibrate = SynapsePolicy.calibrate
    entropy = SynapsePolicy.entropy

    def __init__(self, config: PolicyConfig):
        super().__init__()
        if config.memory != "gru":
            raise ValueError(f"RecurrentSynapsePolicy needs memory='gru', got {config.memory!r}: "
                             "build policies with make_policy(config)")
        self.config = config
        f, h, m = config.num_features - 1, config.hidden, config.memory_size
        self.synapse_net = _mlp([f] + [h] * config.depth)
        self.memory = nn.GRUCell(h, m)
        width = h + m
        self.actor_head = nn.Linear(2 * width, 1)
        self.critic = nn.Sequential(nn.Linear(width, h), nn.Tanh(), nn.Linear(h, 1))
        self.log_std = nn.Parameter(torch.tensor(float(config.init_log_std)))
        self.register_buffer("feature_scale", torch.ones(f))
        with torch.no_grad():
            self.actor_head.weight.mul_(config.action_gain)
            self.actor_head.bias.zero_()

    @property
    def memory_size(self) -> int:
        return self.config.memory_size

    def initial_state(self, obs: torch.Tensor) -> torch.Tensor:
        """The state at the start of an inner episode for observations ``obs [..., K, F]`` (or flat
        ``[..., K * F]``): zeros ``[..., K, H_m]``."""
        rows = self.rows(obs)
        return rows.new_zeros(*rows.shape[:-1], self.config.memory_size)

    def state_shape(self, fan: int) -> tuple[int, ...]:
        """The state of one agent with ``fan`` synapse slots: ``(fan, H_m)``, one per synapse row."""
        return (fan, self.config.memory_size)

    def _embed(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [..., K, F]`` -> the synapse embedding ``[..., K, H]`` (the GRU's input) and the
        mask ``[..., K]`` (no state needed: batched over time)."""
        feats, mask = self.split(obs)
        return self.synapse_net(feats * self.feature_scale), mask

    def _step_state(self, gates_in: torch.Tensor, state: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One GRU step of every synapse row; ``mask`` None: every slot is a real synapse."""
        m = self.config.memory_size
        new = gru_update(gates_in.reshape(-1, 3 * m), state.reshape(-1, m), self.memory).view(state.shape)
        return new if mask is None else new * mask.unsqueeze(-1)  # padding slots keep a zero state

    def _heads(self, embedded: torch.Tensor, state: torch.Tensor, mask: torch.Tensor, padded: bool = True):
        """Actor mean ``[..., K]``, log-std ``[..., K]`` and value ``[...]`` from the embedding and
        the updated state (both ``[..., K, .]``); ``padded`` False (every slot of ``mask`` is a real
        synapse) skips the mask arithmetic, same results."""
        # z = concat(embedded, state) is never built: every product is split into its two halves
        h = embedded.shape[-1]
        if padded:
            weights = (mask / mask.sum(-1, keepdim=True).clamp(min=1.0)).unsqueeze(-1)  # [..., K, 1]
            pooled = torch.cat([(embedded * weights).sum(-2), (state * weights).sum(-2)], -1)
        else:
            pooled = torch.cat([embedded.mean(-2), state.mean(-2)], -1)
        w = self.actor_head.weight[0]
        width = pooled.shape[-1]
        per_agent = nn.functional.linear(pooled, w[width:].unsqueeze(0), self.actor_head.bias)  # [..., 1]
        per_synapse = torch.matmul(embedded, w[:h]) + torch.matmul(state, w[h:width])
        mean = per_synapse + per_agent
        if padded:
            mean = mean * mask
        return mean, self.log_std.expand_as(mean), self.critic(pooled).squeeze(-1)

    def forward(self, obs: torch.Tensor, state: torch.Tensor):
        """One step: ``obs [N, K, F]`` (or flat), ``state [N, K, H_m]`` -> action mean ``[N, K]``,
        log-std ``[N, K]``, value ``[N]`` and the new state ``[N, K, H_m]``."""
        obs = self.rows(obs)
        if state.shape != (*obs.shape[:-1], self.config.memory_size):
            raise ValueError(f"state {tuple(state.shape)} does not fit observations {tuple(obs.shape)}: pass "
                             f"[N, K, {self.config.memory_size}] (policy.initial_state(obs) at an episode start)")
        embedded, mask = self._embed(obs)
        m = self.config.memory_size
        state = self.memory(embedded.reshape(-1, embedded.shape[-1]), state.reshape(-1, m)).view(state.shape)
        padded = not bool((mask == 1).all())  # the fast path's trimmed blocks have no padding
        if padded:
            state = state * mask.unsqueeze(-1)  # padding slots keep a zero state
        return (*self._heads(embedded, state, mask, padded), state)

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor | None = None):
        """A sequence: ``obs [T, N, K, F]`` (or flat), the state before its first step
        ``[N, K, H_m]`` and ``starts [T, N]`` (bool; true where a new inner episode begins at step
        t, so the state is zeroed before it) -> mean, log-std ``[T, N, K]``, value ``[T, N]`` and the
        state after the last step. Equals :meth:`forward` called step by step (float rounding).

        The synapse network and the heads run once over the whole sequence. The recurrence runs
        as torch's multi-step GRU (``nn.GRU`` with this cell's parameters, the same weight layout)
        over each stretch of steps with no reset inside: one stretch when no row
        begins an episode after step 0 (a rollout of whole inner episodes, the fast path's default
        ``rollout_steps = max_cycles``), else one per step at which some row does (the reset rows'
        states zeroed between stretches). A slot's mask must be the same at every step for that
        (padding slots' states are zeroed afterwards; they never reach another slot's); a mask that
        changes over time (RLlib's sequences padded at their end), or ``sequence_recurrence =
        False``, steps torch's GRU update one step at a time instead."""
        obs = self.rows(obs)
        embedded, mask = self._embed(obs)
        padded = not bool((mask == 1).all())  # the fast path's trimmed blocks have no padding
        if not self.sequence_recurrence or (padded and not bool((mask == mask[:1]).all())):
            return self._unroll_stepwise(embedded, mask, state, starts)
        states = run_gru(gru_shell(self, self.memory), self.memory, embedded, state, starts)
        if padded:
            states = states * mask.unsqueeze(-1)  # padding slots keep a zero state
        mean, log_std, value = self._heads(embedded, states, mask, padded)
        return mean, log_std, value, states[-1]

    def step_blocks(self, obs: list[torch.Tensor], state: list[torch.Tensor]):
        """:meth:`forward` on several blocks of agents, one call per block: per block (mean,
        log-std, value) and the new states per block (the interface ``NeuronMemoryPolicy`` shares)."""
        outs = [self(x, s) for x, s in zip(obs, state)]
        return [o[:3] for o in outs], [o[3] for o in outs]

    def unroll_blocks(self, obs: list[torch.Tensor], state: list[torch.Tensor],
                      starts: list[torch.Tensor] | None = None):
        """:meth:`unroll` on several blocks of agents over the same steps, one call per block: per
        block (mean, log-std, value) and the states after the last step per block."""
        outs = [self.unroll(x, s, None if starts is None else b) for x, s, b in
                zip(obs, state, starts or [None] * len(obs))]
        return [o[:3] for o in outs], [o[3] for o in outs]

    def _unroll_stepwise(self, embedded: torch.Tensor, mask: torch.Tensor, state: torch.Tensor,
                         starts: torch.Tensor | None):
        """:meth:`unroll` one GRU step at a time (any mask, any resets)."""
        gates_in = nn.functional.linear(embedded, self.memory.weight_ih, self.memory.bias_ih)
        states = []
        # unbind, not indexing: one backward node for the whole sequence instead of one
        # full-size zero gradient per step
        for t, (gates, step_mask) in enumerate(zip(gates_in.unbind(0), mask.unbind(0))):
            if starts is not None and bool(starts[t].any()):
                state = reset_rows(state, starts[t])
            state = self._step_state(gates, state, step_mask)
            states.append(state)
        mean, log_std, value = self._heads(embedded, torch.stack(states), mask)
        return mean, log_std, value, state
