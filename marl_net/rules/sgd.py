"""Stochastic gradient descent by backprop (Cai & Cheng section 4), batched over E copies.

    dW_l = -eta * dE/dW_l          (E: the loss on the step's minibatch; descent sign)

The gradient is the one the environment hands out as its privileged ``gradient`` observation
feature (:meth:`marl_net.context.StepContext.gradient`), so SGD as a trainer and SGD as a policy
inside ``network_weights_v0`` compute the same numbers. Biases (``bias=True``) are the last column
of each layer's weight-space parameters and are updated like weights.

Run it::

    from marl_net.config import EnvConfig
    from marl_net.rules.registry import run_rule
    run = run_rule("sgd", EnvConfig(task="teacher_student"), seeds=[0, 1, 2], steps=500, lr=0.5)
    run.curves  # [3, 501] minibatch losses; they fall from ~0.3 to ~0.007
"""

from __future__ import annotations

import torch

from marl_net.context import StepContext
from marl_net.rules.common import PerCopy, check_deterministic


def sgd_update(gradient: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """``-lr * gradient`` for one layer (``gradient [E, ...]``, ``lr [E]``), as trainer and policy compute it."""
    return gradient * (-lr).view(-1, *([1] * (gradient.dim() - 1)))


class SGD:
    """Backprop SGD. ``lr``: the step size eta, one float or one per copy."""

    name = "sgd"

    def __init__(self, lr: float | list[float] = 1.0):
        self.lr = PerCopy("lr", lr, positive=True)

    def start(self, config, copies: int) -> None:
        check_deterministic(config, self.name)
        self.lr_t = self.lr.tensor(copies)

    def update(self, ctx: StepContext) -> list[torch.Tensor]:
        return [sgd_update(g, self.lr_t.to(g.device)) for g in ctx.gradient()]
