"""Weight Maximization (Chung 2022): every hidden unit maximizes the norm of its outgoing weights.

The output layer is a REINFORCE learner on the global signal (the TD error, or the reward of a
one-step task). A hidden unit i of layer l is instead rewarded by the first-order change of the
L^p norm of its outgoing weights ``v_i = W_{l+1}[:, i]`` (eq. 4; ``1/p`` of the change of
``||v||_p^p``):

    G_i = sum_o |v_io|^(p-1) sign(v_io) dv_io          (p = 2:  G_i = v_i . dv_i)

where ``dv`` is the *raw* change of the outgoing weights (the ascent direction with step size 1,
before the optimizer; it includes the weight-decay term): :func:`marl_net.rewards.weight_max_gain`,
the formula the env's ``weight_max`` reward scheme pays with. Each layer then takes a REINFORCE step
with its own per-unit signal (eq. 7-8). Weight decay c adds ``-2 c W`` to every raw update.

:class:`WeightMax` computes the layers top-down within one step (eq. 7-8). :class:`WeightMaxTraces`
is the pipelined variant with eligibility traces (eq. 13-17): each layer needs one step to compute
its update, so layer ``l`` (``s = M - d(l)`` layers below the output) is paid at step t by the
change its outgoing weights made at step t-1, and its trace holds its own gradients from s steps
back, decayed by ``(1 - lambda) (lambda gamma)^k``.
"""

from __future__ import annotations

from collections import deque

import torch

from marl_net.rewards import weight_max_gain
from marl_net.rules.reinforce import (
    ActorStep,
    CoagentActor,
    Traces,
    check_signal,
    flatten,
    local_log_prob_grads,
    scale_rows,
    split,
)


def check_norm(p: float) -> float:
    if not p >= 1:
        raise ValueError(f"norm p={p!r}: Weight Maximization needs an L^p norm with p >= 1 (the paper uses 2)")
    return float(p)


def add_weight_decay(updates: list[torch.Tensor], params: list[torch.Tensor], c: float) -> list[torch.Tensor]:
    """``-2 c W`` added to the weight updates (not the biases)."""
    if c == 0:
        return updates
    return [u - 2 * c * w if i % 2 == 0 else u for i, (u, w) in enumerate(zip(updates, params))]


def check_options(p: float, weight_decay: float) -> None:
    check_norm(p)
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay c={weight_decay!r} must be >= 0 (the paper's best is 0.01)")


class WeightMax:
    """Weight Maximization without delay (eq. 4, 7-8): layers updated from the output down."""

    name = "weight_max"

    def __init__(self, p: float = 2.0, weight_decay: float = 0.0, trace_decay: float = 0.0):
        check_options(p, weight_decay)
        self.p = float(p)
        self.weight_decay = float(weight_decay)
        self.traces = Traces(trace_decay)

    def update(self, actor: CoagentActor, step: ActorStep, signal: torch.Tensor,
               episode_start: torch.Tensor) -> torch.Tensor:
        check_signal(signal, step.action.shape[0])
        return self.update_from_grads(local_log_prob_grads(step), actor.params, signal, episode_start)

    def update_from_grads(self, grads: list[torch.Tensor], params: list[torch.Tensor], signal: torch.Tensor,
                          episode_start: torch.Tensor) -> torch.Tensor:
        """The raw update ``[E, P]`` from every unit's eligibility ``grads`` ``[gW_0, gb_0, ...]`` (what
        :func:`~marl_net.rules.reinforce.local_log_prob_grads` gives), the parameters ``params``
        ``[W_0, b_0, ...]`` the step acted with and the global signal ``[E]``: the maths of eq. 4, 7-8,
        shared by :meth:`update` (Chung's trainer) and the env's RL policy
        (``marl_net.policies.rl_hand_rules.WeightMaxPolicy``, which reads ``grads`` from its features)."""
        check_signal(signal, grads[0].shape[0])
        z = split(self.traces.accumulate(flatten(grads), episode_start), grads)
        n = len(z) // 2
        updates: list[torch.Tensor] = [torch.empty(0)] * len(z)
        reward = signal
        for l in reversed(range(n)):
            u_w, u_b = scale_rows(reward, z[2 * l:2 * l + 2])
            u_w, u_b = add_weight_decay([u_w, u_b], params[2 * l:2 * l + 2], self.weight_decay)
            updates[2 * l], updates[2 * l + 1] = u_w, u_b
            if l > 0:
                reward = weight_max_gain(params[2 * l], u_w, self.p)
        return flatten(updates)


class WeightMaxTraces:
    """Weight Maximization with eligibility traces (eq. 13-17), one step of delay per layer.

    Call :meth:`update` once per step with that step's TD error; with ``lam = 0`` it is the
    pipelined form of :class:`WeightMax` (each hidden layer credited ``s`` steps later).
    """

    name = "weight_max_traces"

    def __init__(self, gamma: float, lam: float, p: float = 2.0, weight_decay: float = 0.0):
        check_options(p, weight_decay)
        if not 0 <= gamma <= 1 or not 0 <= lam <= 1:
            raise ValueError(f"gamma={gamma!r} and lambda={lam!r} must be in [0, 1]")
        self.gamma, self.lam = float(gamma), float(lam)
        self.p = float(p)
        self.weight_decay = float(weight_decay)
        self.traces: list[Traces] | None = None
        self.delayed: list[deque] = []
        self.pending: list[torch.Tensor | None] = []  # hidden-unit rewards for the next step

    def _start(self, n_layers: int) -> None:
        self.traces = [Traces(self.gamma * self.lam, scale=1 - self.lam) for _ in range(n_layers)]
        self.delayed = [deque() for _ in range(n_layers)]
        self.pending = [None] * n_layers

    def update(self, actor: CoagentActor, step: ActorStep, signal: torch.Tensor,
               episode_start: torch.Tensor) -> torch.Tensor:
        check_signal(signal, step.action.shape[0])
        grads = local_log_prob_grads(step)
        n = len(grads) // 2
        if self.traces is None:
            self._start(n)
        updates = []
        for l in range(n):
            shift = n - 1 - l  # M - d(l): steps before this layer's action shows in its reward
            layer = grads[2 * l:2 * l + 2]
            self.delayed[l].append((flatten(layer), episode_start))
            if len(self.delayed[l]) <= shift:  # the first s steps: nothing has reached the layer yet
                updates += [torch.zeros_like(g) for g in layer]
                continue
            g, start = self.delayed[l].popleft()
            z = split(self.traces[l].accumulate(g, start), layer)
            reward = signal if l == n - 1 else self.pending[l]
            u = scale_rows(reward, z) if reward is not None else [torch.zeros_like(t) for t in z]
            updates += add_weight_decay(u, actor.params[2 * l:2 * l + 2], self.weight_decay)
        # rewards for the next step: v . dv with v before this step's change
        self.pending = [weight_max_gain(actor.weights[l + 1], updates[2 * (l + 1)], self.p)
                        for l in range(n - 1)] + [None]
        return flatten(updates)
