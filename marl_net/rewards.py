"""Reward schemes: what each neuron is paid for. A registry, chosen by name.

A scheme is a function ``fn(ctx) -> [E, A]`` (one reward per copy and agent) of the step's
:class:`~marl_net.context.StepContext`. Built in:

- ``global_loss``: every agent gets ``-E_t`` (Cai & Cheng: reward = negative loss).
- ``loss_improvement``: every agent gets ``E_{t-1} - E_t``.
- ``weight_max``: Weight Maximization (Chung 2022, eq. 4). A hidden unit gets ``v . dv``: its
  outgoing weight vector before the step times that vector's change this step. Output units get
  the task signal ``-E_t``. Needs ``ownership="incoming"`` (under outgoing ownership a unit's
  outgoing weights are its own actions, so it would set its own reward).
- ``difference``: counterfactual difference reward ``E(w + dw - dw_i) - E(w + dw)``: the loss with
  agent i's change removed minus the loss with every change, batched over all agents at once.
- ``expected_regret`` (RL tasks that know each action's expected reward: the bandit): every agent
  gets minus the step's expected regret, ``-1/B sum_b (max_a q_a - sum_a pi_b(a) q_a)`` with ``q``
  the actions' expected rewards (arm probabilities) and ``pi_b`` the network's policy. It is the
  sampled reward with the draw of the action, the payout and the task's luck averaged out: a
  meta-training signal that knows the task (the outer loop's privilege; no observation sees it),
  whose sum over a lifetime is minus the ``regret`` metric's expectation.

``reward_unit="percent"`` expresses any scheme's rewards in percent of the episode's initial loss,
so that rewards have the same scale on every task (useful for value functions).

Any scheme can be mixed with the global signal by ``local_ratio`` (as PettingZoo's MPE does):
``r = local_ratio * r_scheme + (1 - local_ratio) * (-E_t)``.

Register your own::

    from marl_net.rewards import register_reward

    @register_reward("sparse_improvement", "1 when the loss fell this step, else 0")
    def sparse_improvement(ctx):
        improved = (ctx.loss < ctx.prev_loss).float()            # [E]
        return improved[:, None].expand(-1, ctx.ownership.num_agents)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from marl_net import losses
from marl_net.context import StepContext
from marl_net.network import activate


@dataclass(frozen=True)
class RewardScheme:
    name: str
    description: str
    fn: Callable[[StepContext], torch.Tensor]
    ownership: str | None = None  # the ownership the scheme requires, if any
    deterministic_units: bool = False  # True when the scheme replays forward passes
    action_values: bool = False  # True when it reads an RL task's expected reward of each action


REWARDS: dict[str, RewardScheme] = {}
REWARD_UNITS = ("loss", "percent")


def register_reward(name: str, description: str, ownership: str | None = None, deterministic_units: bool = False,
                    action_values: bool = False):
    """Decorator: register ``fn(ctx) -> [E, A]`` as reward scheme ``name``."""

    def deco(fn):
        if name in REWARDS:
            raise ValueError(f"reward scheme {name!r} is already registered")
        REWARDS[name] = RewardScheme(name, description, fn, ownership, deterministic_units, action_values)
        return fn

    return deco


def check_scheme(name: str, ownership: str, activations: tuple[str, ...], local_ratio: float | None) -> RewardScheme:
    if name not in REWARDS:
        raise ValueError(f"reward={name!r} is unknown; choose one of {sorted(REWARDS)}")
    scheme = REWARDS[name]
    if scheme.ownership is not None and scheme.ownership != ownership:
        raise ValueError(
            f"reward={name!r} needs ownership={scheme.ownership!r} (got {ownership!r}): "
            f"pass ownership={scheme.ownership!r}"
        )
    if scheme.deterministic_units and "bernoulli" in activations:
        raise ValueError(f"reward={name!r} replays forward passes and needs deterministic units, not 'bernoulli'")
    if local_ratio is not None and not 0.0 <= local_ratio <= 1.0:
        raise ValueError(f"local_ratio={local_ratio!r} must be in [0, 1] (or None for the pure scheme)")
    return scheme


def _per_agent(ctx: StepContext, per_copy: torch.Tensor) -> torch.Tensor:
    return per_copy.unsqueeze(1).expand(-1, ctx.ownership.num_agents)


@register_reward("global_loss", "every agent gets -E_t, the negative inner loss (Cai & Cheng)")
def global_loss(ctx: StepContext) -> torch.Tensor:
    return _per_agent(ctx, -ctx.loss)


@register_reward("loss_improvement", "every agent gets E_{t-1} - E_t, the loss decrease this step")
def loss_improvement(ctx: StepContext) -> torch.Tensor:
    return _per_agent(ctx, ctx.prev_loss - ctx.loss)


@register_reward(
    "weight_max",
    "Weight Maximization (Chung eq. 4): hidden units get v . dv of their outgoing weights, outputs -E_t",
    ownership="incoming",
)
def weight_max(ctx: StepContext) -> torch.Tensor:
    before = ctx.params_before()
    per_block = []
    for b in ctx.ownership.blocks:
        nxt = b.layer + 1  # the layer holding this block's outgoing weights
        if nxt < ctx.spec.num_layers:
            n = b.stop - b.start  # columns of the next layer's weights (its bias column excluded)
            per_block.append(weight_max_gain(before[nxt][..., :n], ctx.delta[nxt][..., :n]))
        else:
            per_block.append(-ctx.loss.unsqueeze(1).expand(-1, b.stop - b.start))
    return ctx.ownership.neuron_values_to_agents(per_block)


def weight_max_gain(outgoing: torch.Tensor, d_outgoing: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Weight Maximization's hidden-unit reward (Chung 2022, eq. 4): the first-order change of the
    L^p norm of a unit's outgoing weights, ``sum_o |v|^(p-1) sign(v) dv`` (``1/p`` of the change of
    ``||v||_p^p``; ``v . dv`` for p = 2), per unit ``[E, n_in]`` from the outgoing weights
    ``[E, n_out, n_in]`` and their change. The env's ``weight_max`` scheme and Chung's actor
    (``marl_net.rules.weight_max``) both pay their hidden units with it."""
    if p == 2:
        return (outgoing * d_outgoing).sum(1)
    return (outgoing.abs().pow(p - 1) * outgoing.sign() * d_outgoing).sum(1)


def counterfactual_preact(ctx: StepContext, layer: int) -> torch.Tensor:
    """Pre-activations of ``layer``'s output with one agent's change removed, for every agent of
    the layer at once: ``[E, agents_of_layer, B, rows]``."""
    z = ctx.fwd.preact[layer]  # [E, B, rows]
    x = ctx.pre(layer)  # [E, B, cols]
    d = ctx.delta[layer]  # [E, rows, cols]
    if ctx.ownership.mode == "outgoing":  # agent c changed column c: z_r -= x_c d_rc
        return z.unsqueeze(1) - x.transpose(1, 2).unsqueeze(-1) * d.transpose(1, 2).unsqueeze(2)
    rows = z.shape[-1]  # agent r changed row r: only z_r moves, by x . d_r
    contribution = torch.matmul(x, d.transpose(1, 2)).transpose(1, 2)  # [E, rows, B]
    eye = torch.eye(rows, dtype=z.dtype, device=z.device)
    return z.unsqueeze(1) - contribution.unsqueeze(-1) * eye.unsqueeze(1)


@register_reward(
    "difference",
    "difference reward: loss with the agent's change removed minus loss with all changes (batched)",
    deterministic_units=True,
)
def difference(ctx: StepContext) -> torch.Tensor:
    per_block = []
    spec = ctx.spec
    for b in ctx.ownership.blocks:
        z = counterfactual_preact(ctx, b.layer)  # [E, n_agents, B, rows]
        h = activate(z, spec.activation(b.layer))
        for l in range(b.layer + 1, spec.num_layers):
            p = ctx.params[l].unsqueeze(1)
            if spec.bias:
                h = torch.matmul(h, p[..., :-1].transpose(-1, -2)) + p[..., -1].unsqueeze(-2)
            else:
                h = torch.matmul(h, p.transpose(-1, -2))
            h = activate(h, spec.activation(l))
        e, n = h.shape[:2]
        targets = ctx.targets.unsqueeze(1).expand(e, n, *ctx.targets.shape[1:])
        cf_loss = losses.compute(ctx.loss_name, h.flatten(0, 1), targets.flatten(0, 1)).view(e, n)
        per_block.append(cf_loss - ctx.loss.unsqueeze(1))
    return ctx.ownership.neuron_values_to_agents(per_block)


@register_reward(
    "expected_regret",
    "RL tasks that know each action's expected reward (bandit): every agent gets minus the step's expected regret",
    action_values=True,
)
def expected_regret(ctx: StepContext) -> torch.Tensor:
    values = ctx.rl.action_values  # [E, B, actions]
    gap = values.amax(-1) - (ctx.rl.probs * values).sum(-1)  # [E, B]
    return _per_agent(ctx, -gap.mean(1))


def compute_rewards(ctx: StepContext, scheme: RewardScheme, local_ratio: float | None,
                    unit: str = "loss", diverged: torch.Tensor | None = None) -> torch.Tensor:
    """The scheme's rewards ``[E, A]``, mixed with ``-E_t`` by ``local_ratio`` when given, in
    ``unit`` ("loss", or "percent" of the episode's initial loss).

    The scheme's output is checked: a tensor of shape ``[copies, agents]``, finite on every copy
    that did not diverge (``diverged [E]`` bool; on a diverged copy NaN or infinity is the
    network's doing, and the core pays the divergence penalty there instead). A scheme that breaks
    this raises ValueError naming it, rather than paying some agents or silently paying zero."""
    r = scheme.fn(ctx)
    expected = (int(ctx.loss.shape[0]), ctx.ownership.num_agents)
    if not isinstance(r, torch.Tensor) or tuple(r.shape) != expected:
        got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
        raise ValueError(f"reward scheme {scheme.name!r} returned {got}; a scheme returns a tensor of shape "
                         f"[copies, agents] = {list(expected)}, one reward per copy and agent")
    if not r.is_floating_point():
        raise ValueError(f"reward scheme {scheme.name!r} returned dtype {r.dtype}; return floats (e.g. .float())")
    within = r.abs().amax(1) <= torch.finfo(r.dtype).max  # False for NaN and infinities (amax propagates NaN)
    if diverged is not None:
        within = within | diverged
    if not bool(within.all()):
        copies = torch.nonzero(~within).flatten().tolist()
        raise ValueError(f"reward scheme {scheme.name!r} returned NaN or inf rewards for copies {copies}, whose "
                         "networks did not diverge: return finite rewards (diverged copies are paid "
                         "-divergence_penalty by the core)")
    if local_ratio is not None and scheme.name != "global_loss":
        r = local_ratio * r + (1.0 - local_ratio) * global_loss(ctx)
    if unit == "percent":
        r = 100.0 * r / ctx.initial_loss.abs().clamp(min=1e-8).unsqueeze(1)
    return r
