"""Chung's agent: an actor learner (actor + update rule + Adam) and a backprop-trained critic.

Both hold E independent copies (one per seed) in flat Adam buffers. The critic is a 64-32 network
of softplus units with a linear output, trained by TD(lambda) with accumulating traces, as in the
paper's code.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from marl_net.network import NetworkSpec
from marl_net.reproduce.methods import Method, RuleOptions
from marl_net.reproduce.optim import Adam, pack
from marl_net.rules.reinforce import ActorStep, CoagentActor, Traces, flatten, glorot_uniform, init_params
from marl_net.rules.ste import backprop_grads

HIDDEN = (64, 32)


def per_tensor(rates: Sequence[float]) -> list[float]:
    """One rate per layer -> one per tensor (the weight and the bias of a layer share it)."""
    return [r for r in rates for _ in range(2)]


class ActorLearner:
    """E copies of the actor trained by ``method``; ``learn`` applies one Adam step."""

    def __init__(self, method: Method, opts: RuleOptions, gens, n_in: int, n_actions: int,
                 lr_start: Sequence[float], lr_end: Sequence[float] | None = None, decay_steps: int = 1,
                 output_temperature: float = 1.0, hidden: Sequence[int] = HIDDEN, device="cpu"):
        if n_actions < 2:
            raise ValueError(f"n_actions={n_actions}: a softmax policy needs at least 2 actions")
        spec = NetworkSpec((n_in, *hidden, n_actions - 1), hidden_activation=method.hidden_activation)
        if len(lr_start) != spec.num_layers:
            raise ValueError(f"give one actor learning rate per layer ({spec.num_layers}), got {list(lr_start)}")
        self.flat, views = pack(init_params(spec, gens, device=device))
        self.actor = CoagentActor(spec, views, output_temperature, method.explore_prob(opts))
        self.rule = method.make_rule(opts)
        self.adam = Adam(self.flat, [v[0].numel() for v in views], per_tensor(lr_start),
                         per_tensor(lr_end) if lr_end is not None else None, decay_steps)

    def act(self, x: torch.Tensor, uniforms: torch.Tensor) -> ActorStep:
        return self.actor.act(x, uniforms)

    def learn(self, step: ActorStep, signal: torch.Tensor, episode_start: torch.Tensor) -> None:
        self.adam.step(self.rule.update(self.actor, step, signal, episode_start))


class Critic:
    """E copies of a softplus value network trained by TD(lambda) (semi-gradient, accumulating traces)."""

    def __init__(self, gens, n_in: int, lr_start: Sequence[float], lr_end: Sequence[float] | None = None,
                 decay_steps: int = 1, trace_decay: float = 0.0, hidden: Sequence[int] = HIDDEN, device="cpu"):
        layers = (n_in, *hidden, 1)
        if len(lr_start) != len(layers) - 1:
            raise ValueError(f"give one critic learning rate per layer ({len(layers) - 1}), got {list(lr_start)}")
        params = []
        for a, b in zip(layers[:-1], layers[1:]):
            params += [glorot_uniform(gens, b, a, device=device), torch.zeros(len(gens), b, device=device)]
        self.flat, self.params = pack(params)
        self.adam = Adam(self.flat, [p[0].numel() for p in self.params], per_tensor(lr_start),
                         per_tensor(lr_end) if lr_end is not None else None, decay_steps)
        self.traces = Traces(trace_decay)

    def value(self, x: torch.Tensor, params: list[torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Values ``[E, B]`` of states ``x`` ``[E, B, n_in]``, with the layer inputs and
        pre-activations the gradient needs; under ``params`` (split like :attr:`params`) when given,
        else the critic's own."""
        params = self.params if params is None else params
        inputs, preacts, h = [], [], x
        n = len(params) // 2
        for l in range(n):
            z = torch.baddbmm(params[2 * l + 1].unsqueeze(1), h, params[2 * l].transpose(1, 2))
            inputs.append(h)
            preacts.append(z)
            h = F.softplus(z) if l < n - 1 else z
        return h.squeeze(-1), inputs, preacts

    def learn(self, inputs: list[torch.Tensor], preacts: list[torch.Tensor], row: int,
              td_error: torch.Tensor, episode_start: torch.Tensor) -> None:
        """One TD(lambda) step for the state in row ``row`` of an earlier :meth:`value` call."""
        x = [t[:, row] for t in inputs]
        derivs = [torch.sigmoid(z[:, row]) for z in preacts[:-1]]
        grads = backprop_grads(self.params[0::2], x, torch.ones_like(preacts[-1][:, row]), derivs)
        z = self.traces.accumulate(flatten(grads), episode_start)
        self.adam.step(z * td_error.unsqueeze(1))
