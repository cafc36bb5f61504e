"""Weight Maximization as ``network_weights_v0`` runs it: supervised minibatches, ``ownership="incoming"``,
Bernoulli-logistic hidden units, and the env's own ``weight_max`` reward scheme as the hidden units' signal.

Chung's Weight Max (``marl_net.rules.weight_max``) trains an RL actor one sample at a time. Inside
the network-weights environment what is *exact* is its pipelined form (Chung eq. 13-17 with
lambda = 0): every agent acts at once from what it observes, and a hidden unit learns of the change
of its outgoing weights only through the reward that change earns. Concretely, per step t on
minibatch b_t (B samples):

- output units (deterministic, the task's loss on them): the delta rule
  ``dW_out = -lr_output * dE/dW_out``, the gradient of the minibatch loss through the output layer
  only, given the sampled hidden activity (local to the output unit: its error and its inputs);
- hidden unit j of weight layer l (a Bernoulli-logistic unit, s = L-1-l layers below the output):
  a REINFORCE step ``dW_l[j] = lr_hidden * G_t[j] * e_{t-s}[j]`` with
  ``e[j] = 1/B sum_b (h_bj - sigmoid(z_bj)) x_b`` its eligibility on the minibatch s steps back and
  ``G_t[j] = v_j . dv_j`` the env's ``weight_max`` reward for the change ``dv`` its outgoing weights
  ``v`` made at step t-1 (Chung eq. 4, p = 2). Steps before the first reward arrives change nothing.

``s`` steps of delay is what makes reward and eligibility belong together: the change a layer's
outgoing weights made at step t-1 was computed from eligibilities s-1 steps older still. The
in-env policy (``marl_net.policies.hand_rules.WeightMaxPolicy``) keeps the same short eligibility
history and is paid by the env; this trainer computes the same reward with the env's scheme
function (:func:`marl_net.rewards.weight_max`) on its own step context. Not covered in the env:
L^p norms with p != 2 and weight decay c (the env's reward scheme is the p = 2, c = 0 case).
"""

from __future__ import annotations

from collections import deque

import torch

from marl_net import losses
from marl_net.context import StepContext
from marl_net.network import activate, split_bias
from marl_net.rewards import weight_max as weight_max_reward
from marl_net.rules.common import PerCopy
from marl_net.rules.sgd import sgd_update


def check_weight_max_config(config) -> None:
    if config.ownership != "incoming":
        raise ValueError("rule 'weight_max' needs ownership='incoming' (a unit is paid for its outgoing weights, "
                         "which other units own): pass ownership='incoming'")
    if config.hidden_activation != "bernoulli" or config.output_activation == "bernoulli":
        raise ValueError("rule 'weight_max' needs Bernoulli-logistic hidden units and a deterministic output: "
                         "pass hidden_activation='bernoulli', output_activation='linear'")
    if len(config.layers) < 3:
        raise ValueError(f"layers={config.layers!r}: Weight Max needs at least one hidden layer, e.g. (20, 64, 2)")


def bernoulli_eligibility(ctx: StepContext, layer: int) -> torch.Tensor:
    """``1/B sum_b (h_b - sigmoid(z_b)) x_b^T`` ``[E, rows, cols]`` for a Bernoulli layer, else zeros."""

    def compute():
        if ctx.spec.activation(layer) != "bernoulli":
            return torch.zeros_like(ctx.params[layer])
        h = ctx.post(layer)
        dz = h - torch.sigmoid(ctx.fwd.preact[layer])
        return torch.matmul(dz.transpose(1, 2), ctx.pre(layer)) / h.shape[1]

    return ctx.cached(f"bernoulli_eligibility/{layer}", compute)


def output_gradient(ctx: StepContext, layer: int) -> torch.Tensor:
    """``dE/dW`` of the output layer given its (sampled) inputs ``[E, rows, cols]``; zeros elsewhere."""

    def compute():
        last = ctx.spec.num_layers - 1
        if layer != last:
            return torch.zeros_like(ctx.params[layer])
        with torch.enable_grad():
            p = ctx.params[last].detach().clone().requires_grad_(True)
            (w,), b = split_bias(ctx.spec, [p])
            z = torch.matmul(ctx.fwd.activity[last], w.transpose(-1, -2))
            if b is not None:
                z = z + b[0].unsqueeze(-2)
            out = activate(z, ctx.spec.output_activation)
            (g,) = torch.autograd.grad(losses.compute(ctx.loss_name, out, ctx.targets).sum(), [p])
        return g.detach()

    return ctx.cached(f"output_gradient/{layer}", compute)


def hidden_delays(num_layers: int) -> list[int]:
    """Steps between a layer's eligibility and the reward that credits it: L-1-l (0 for the output)."""
    return [num_layers - 1 - l for l in range(num_layers)]


def row_update(reward: torch.Tensor, eligibility: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """``eligibility * (reward * lr)`` with ``reward [E, rows]`` (or agent space ``[E, A]``) and ``lr [E]``:
    evaluated the same way by the trainer and the policy."""
    return eligibility * (reward * lr.view(-1, 1)).unsqueeze(-1)


class WeightMaxEnv:
    """Pipelined Weight Max on supervised minibatches (see the module docstring).

    ``lr``: the output layer's step size; ``hidden_lr``: the hidden units' REINFORCE step size.
    """

    name = "weight_max"

    def __init__(self, lr: float | list[float] = 0.5, hidden_lr: float | list[float] = 1000.0):
        self.lr = PerCopy("lr", lr, positive=True)
        self.hidden_lr = PerCopy("hidden_lr", hidden_lr, positive=True)

    def start(self, config, copies: int) -> None:
        check_weight_max_config(config)
        self.lr_t = self.lr.tensor(copies)
        self.hidden_lr_t = self.hidden_lr.tensor(copies)
        self.delays = hidden_delays(len(config.layers) - 1)
        self.history: list[deque] = [deque(maxlen=s) for s in self.delays]

    def update(self, ctx: StepContext) -> list[torch.Tensor]:
        rewards = weight_max_reward(ctx)  # [E, A]; ctx.delta is the change made at the last step
        updates = []
        for block in ctx.ownership.blocks:
            l, s = block.layer, self.delays[block.layer]
            if s == 0:
                grad = output_gradient(ctx, l)
                updates.append(sgd_update(grad, self.lr_t.to(grad.device)))
                continue
            hist = self.history[l]
            if len(hist) == s:
                reward = rewards[:, block.start:block.stop]
                updates.append(row_update(reward, hist[0], self.hidden_lr_t.to(reward.device)))
            else:
                updates.append(torch.zeros_like(ctx.params[l]))
            hist.append(bernoulli_eligibility(ctx, l))
        return updates
