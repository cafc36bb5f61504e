"""Backprop baselines of Chung (2022), Table 1: STE backprop and plain backprop.

Both backpropagate the output unit's REINFORCE gradient ``(onehot(a) - p) / temperature`` through
the actor and keep accumulating traces of the result (actor-critic with eligibility traces):

    u = G * z,    z = gamma * lambda * z + grad_W log pi(a | s)

- **STE backprop** (Bengio, Leonard & Courville 2013): the hidden units stay Bernoulli-logistic and
  sampled; the backward pass treats the sample as if it were its mean, ``dh/dz = sigmoid'(z)``.
- **Backprop** (the no-sampling case): the hidden units are deterministic ReLUs
  (``CoagentActor`` with ``hidden_activation='relu'``), so the gradient is exact.

:func:`backprop_grads` is the shared backward pass; the critic of ``marl_net.reproduce`` uses it too.
"""

from __future__ import annotations

import torch

from marl_net.rules.reinforce import ActorStep, CoagentActor, Traces, check_signal, flatten, outer_grads


def backprop_grads(weights: list[torch.Tensor], inputs: list[torch.Tensor], dz_out: torch.Tensor,
                   derivs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Backward pass of a layered net, ``[gW_0, gb_0, ...]``.

    ``inputs[l]`` ``[E, n_l]`` feeds weight layer l; ``dz_out`` ``[E, n_L]`` is the gradient at the
    output pre-activation; ``derivs[l]`` ``[E, n_{l+1}]`` is ``dh/dz`` of hidden layer l.
    """
    if len(derivs) != len(weights) - 1:
        raise ValueError(f"got {len(derivs)} hidden derivatives for {len(weights)} layers; pass one per hidden layer")
    dz = [dz_out]
    for l in range(len(weights) - 1, 0, -1):
        dh = torch.bmm(dz[0].unsqueeze(1), weights[l]).squeeze(1)
        dz.insert(0, dh * derivs[l - 1])
    return outer_grads(inputs, dz)


def hidden_derivatives(actor: CoagentActor, step: ActorStep) -> list[torch.Tensor]:
    """``dh/dz`` of each hidden layer: sigmoid' for Bernoulli units (straight-through), 1[z > 0] for ReLU."""
    if actor.spec.hidden_activation == "bernoulli":
        return [m * (1 - m) for m in step.means[:-1]]
    return [(z > 0).to(z.dtype) for z in step.preacts[:-1]]


class Backprop:
    """Actor gradient by backprop: STE through Bernoulli units, exact through ReLU units."""

    def __init__(self, trace_decay: float = 0.0):
        self.traces = Traces(trace_decay)

    @property
    def name(self) -> str:
        return "backprop"

    def update(self, actor: CoagentActor, step: ActorStep, signal: torch.Tensor,
               episode_start: torch.Tensor) -> torch.Tensor:
        check_signal(signal, step.action.shape[0])
        dz_out = (step.outputs[-1] - step.means[-1]) / step.temperatures[-1]
        grads = backprop_grads(actor.weights, step.inputs, dz_out, hidden_derivatives(actor, step))
        z = self.traces.accumulate(flatten(grads), episode_start)
        return z * signal.unsqueeze(1)


class STE(Backprop):
    """Straight-through-estimator backprop through sampled Bernoulli-logistic units."""

    @property
    def name(self) -> str:
        return "ste"

    def update(self, actor, step, signal, episode_start):
        if actor.spec.hidden_activation != "bernoulli":
            raise ValueError("STE backprop is for Bernoulli hidden units; use Backprop for a ReLU actor")
        return super().update(actor, step, signal, episode_start)
