"""What one step of the dynamics computed, for observation features and reward schemes.

Everything is batched over E copies and lives in weight space (see ``marl_net.ownership``).
Derived quantities (correlations, gradients, counterfactual losses) are computed on first use and
cached, so a feature or scheme that is not enabled costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from marl_net import losses
from marl_net.network import ForwardPass, NetworkSpec, forward, split_bias, with_ones
from marl_net.ownership import Ownership


@dataclass
class StepContext:
    spec: NetworkSpec
    ownership: Ownership
    loss_name: str
    params: list[torch.Tensor]  # weight space, after this step's change
    delta: list[torch.Tensor]  # the change applied this step (zeros at reset)
    inputs: torch.Tensor  # minibatch [E, B, n_0]
    targets: torch.Tensor
    fwd: ForwardPass  # forward pass of ``params`` on the minibatch
    loss: torch.Tensor  # [E]
    prev_loss: torch.Tensor  # [E]
    initial_loss: torch.Tensor  # [E], the loss at reset
    t: torch.Tensor  # [E] steps taken in the episode
    max_cycles: int
    action_scale: float
    noise_generators: list[torch.Generator]
    feedback: Any = None  # marl_net.feedback_alignment.Feedback: the copies' fixed feedback matrices, when drawn
    cache: dict[str, Any] = field(default_factory=dict)
    # accumulator features' values after this evaluation's update, {name: [E, rows, cols] per layer}
    # (``marl_net.accumulators``; set by the core when such features are enabled)
    accumulators: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    rl: Any = None  # RL tasks: the step's marl_net.tasks.rl.RLStep (actions, probabilities, rewards, baseline)

    @property
    def copies(self) -> int:
        return self.loss.shape[0]

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def pre(self, layer: int) -> torch.Tensor:
        """Presynaptic activity of weight layer ``layer`` ``[E, B, cols]`` (bias input included)."""
        x = self.fwd.activity[layer]
        return with_ones(x) if self.spec.bias else x

    def post(self, layer: int) -> torch.Tensor:
        """Postsynaptic activity of weight layer ``layer`` ``[E, B, rows]``."""
        return self.fwd.activity[layer + 1]

    def params_before(self) -> list[torch.Tensor]:
        return [p - d for p, d in zip(self.params, self.delta)]

    def loss_of(self, params: list[torch.Tensor], **forward_kwargs) -> torch.Tensor:
        """The task loss ``[E]`` of other parameters on this step's minibatch."""
        weights, biases = split_bias(self.spec, params)
        out = forward(self.spec, weights, self.inputs, biases, **forward_kwargs).output
        return losses.compute(self.loss_name, out, self.targets)

    def gradient(self) -> list[torch.Tensor]:
        """Backprop gradient ``dE/dparams`` per layer (privileged information: not local)."""

        def compute():
            with torch.enable_grad():
                params = [p.detach().clone().requires_grad_(True) for p in self.params]
                loss = self.loss_of(params).sum()  # copies are independent: the sum separates them
                grads = torch.autograd.grad(loss, params)
            return [g.detach() for g in grads]

        return self.cached("gradient", compute)
