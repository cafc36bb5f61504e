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
per-step synapse network and heads batched over time, only the GRU recurrence stepped), as PPO's
learner and the RLlib module's training forward do.

The recurrent policy runs on torch only: the fused CPU kernels (``fused_layer``,
``fused_actor_critic``) implement the feed-forward policy, and ``fused_actor_critic.applies``
answers False for this one. Plain torch, no RLlib types: ``SynapseRLModule`` wraps it as a
stateful RLModule, the fast path's recurrent PPO (``marl_net.fast.recurrent_ppo``) trains it, and
the same state dict loads on either path.
"""

from __future__ import annotations

import torch
from torch import nn

from marl_net.policies.synapse_policy import PolicyConfig, SynapsePolicy, _mlp


def make_policy(config: PolicyConfig) -> SynapsePolicy | "RecurrentSynapsePolicy":
    """The policy ``config`` asks for: :class:`SynapsePolicy` (``memory="none"``, the default; the
    same parameters and draws as building it directly) or :class:`RecurrentSynapsePolicy`."""
    return RecurrentSynapsePolicy(config) if config.memory == "gru" else SynapsePolicy(config)


def reset_rows(state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``state [N, ...]`` with the rows where ``rows [N]`` (bool) is true set to zero (a new inner
    episode begins for them); a new tensor, no Python loop over rows."""
    keep = (~rows.to(torch.bool)).to(state.dtype)
    return state * keep.view(-1, *([1] * (state.dim() - 1)))


def gru_update(gates_in: torch.Tensor, state: torch.Tensor, cell: nn.GRUCell) -> torch.Tensor:
    """torch's ``GRUCell`` update from its input projection ``gates_in = W_ih x + b_ih [M, 3 H_m]``
    (computed once for a whole sequence) and the state ``[M, H_m]``: gates r, z, n in torch's order."""
    m = state.shape[-1]
    gates_h = nn.functional.linear(state, cell.weight_hh, cell.bias_hh)
    reset, update = torch.sigmoid(gates_in[..., : 2 * m] + gates_h[..., : 2 * m]).split(m, -1)
    new = torch.tanh(torch.addcmul(gates_in[..., 2 * m :], reset, gates_h[..., 2 * m :]))
    return torch.lerp(new, state, update)  # (1 - update) * new + update * state


class RecurrentSynapsePolicy(nn.Module):
    """The shared actor-critic with a per-synapse GRU state (see the module docstring)."""

    recurrent = True

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

    def _embed(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``obs [..., K, F]`` -> the synapse embedding ``[..., K, H]``, the GRU's input projection
        ``[..., K, 3 H_m]`` and the mask ``[..., K]`` (no state needed: batched over time)."""
        feats, mask = self.split(obs)
        embedded = self.synapse_net(feats * self.feature_scale)
        gates_in = nn.functional.linear(embedded, self.memory.weight_ih, self.memory.bias_ih)
        return embedded, gates_in, mask

    def _step_state(self, gates_in: torch.Tensor, state: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One GRU step of every synapse row; ``mask`` None: every slot is a real synapse."""
        m = self.config.memory_size
        new = gru_update(gates_in.reshape(-1, 3 * m), state.reshape(-1, m), self.memory).view(state.shape)
        return new if mask is None else new * mask.unsqueeze(-1)  # padding slots keep a zero state

    def _heads(self, embedded: torch.Tensor, state: torch.Tensor, mask: torch.Tensor):
        """Actor mean ``[..., K]``, log-std ``[..., K]`` and value ``[...]`` from the embedding and
        the updated state (both ``[..., K, .]``)."""
        # z = concat(embedded, state) is never built: every product is split into its two halves
        h = embedded.shape[-1]
        weights = (mask / mask.sum(-1, keepdim=True).clamp(min=1.0)).unsqueeze(-1)  # [..., K, 1]
        pooled = torch.cat([(embedded * weights).sum(-2), (state * weights).sum(-2)], -1)
        w = self.actor_head.weight[0]
        width = pooled.shape[-1]
        per_agent = nn.functional.linear(pooled, w[width:].unsqueeze(0), self.actor_head.bias)  # [..., 1]
        per_synapse = torch.matmul(embedded, w[:h]) + torch.matmul(state, w[h:width])
        mean = (per_synapse + per_agent) * mask
        return mean, self.log_std.expand_as(mean), self.critic(pooled).squeeze(-1)

    def forward(self, obs: torch.Tensor, state: torch.Tensor):
        """One step: ``obs [N, K, F]`` (or flat), ``state [N, K, H_m]`` -> action mean ``[N, K]``,
        log-std ``[N, K]``, value ``[N]`` and the new state ``[N, K, H_m]``."""
        obs = self.rows(obs)
        if state.shape != (*obs.shape[:-1], self.config.memory_size):
            raise ValueError(f"state {tuple(state.shape)} does not fit observations {tuple(obs.shape)}: pass "
                             f"[N, K, {self.config.memory_size}] (policy.initial_state(obs) at an episode start)")
        embedded, gates_in, mask = self._embed(obs)
        state = self._step_state(gates_in, state, mask)
        return (*self._heads(embedded, state, mask), state)

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor | None = None):
        """A sequence: ``obs [T, N, K, F]`` (or flat), the state before its first step
        ``[N, K, H_m]`` and ``starts [T, N]`` (bool; true where a new inner episode begins at step
        t, so the state is zeroed before it) -> mean, log-std ``[T, N, K]``, value ``[T, N]`` and the
        state after the last step. Equals :meth:`forward` called step by step (float rounding)."""
        obs = self.rows(obs)
        embedded, gates_in, mask = self._embed(obs)
        padded = not bool((mask == 1).all())  # the fast path's trimmed blocks have no padding
        states = []
        # unbind, not indexing: one backward node for the whole sequence instead of one
        # full-size zero gradient per step
        for t, (gates, step_mask) in enumerate(zip(gates_in.unbind(0), mask.unbind(0))):
            if starts is not None and bool(starts[t].any()):
                state = reset_rows(state, starts[t])
            state = self._step_state(gates, state, step_mask if padded else None)
            states.append(state)
        mean, log_std, value = self._heads(embedded, torch.stack(states), mask)
        return mean, log_std, value, state
