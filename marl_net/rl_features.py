"""Observation features a neuron can have when the network is an RL agent (RL inner tasks,
``marl_net.tasks.rl``). Registered whenever ``marl_net.observations`` is imported; only RL tasks
accept them (``EnvConfig`` refuses them for supervised tasks, which have no actions or rewards).

- ``inner_reward`` (global): the step's mean reward over the inner copies, ``1/B sum_b r_b``
  (``-E_t``): a dopamine-like broadcast.
- ``reward_prediction_error`` (global): that mean reward minus the running baseline ``b`` before
  the step, where ``b <- b + baseline_rate * (mean reward - b)`` after every step and ``b = 0``
  at every reset of the network (the baseline is core state, ``NetworkWeightsCore.baseline``;
  ``baseline_rate`` is the task's argument, 0.1 by default). A neuromodulator-like error.
- ``output_eligibility`` (local): for a synapse into output unit k from presynaptic unit j, the
  REINFORCE eligibility of the softmax policy, ``1/B sum_b (onehot(a_b)_k - pi_k(x_b)) x_bj``
  (what the unit did minus what it was expected to do, times its input; the bias input is 1);
  zero for the synapses of other layers. ``d log pi(a | x) / dW`` of the output layer.
- ``reinforce_update`` (local): the three factors already multiplied per inner copy,
  ``1/B sum_b (r_b - b) (onehot(a_b)_k - pi_k(x_b)) x_bj``: REINFORCE's update direction with the
  running baseline for the output layer (with B > 1 it differs from ``rpe * output_eligibility``,
  the product of the two means). Zero for the other layers.

- ``next_input`` (local): for a synapse of the first layer from input j, the input the network
  will see at the next step, ``1/B sum_b x_{t+1,bj}`` (the bias input is 1): what an input neuron
  emits next, the state the transition led to; zero for the other layers. (A critic's ``V(s_{t+1})``.)
- ``final_input`` (local): the same for the state the transition *ended* in, which differs from
  ``next_input`` only where an inner episode ended and restarted (Gymnasium's ``final_obs``; a
  critic bootstraps from it on a time-limit truncation).
- ``inner_terminated`` (global): the fraction of inner copies whose episode terminated this step
  (CartPole: the pole fell or the cart left; never for the continuing tasks).
- ``inner_episode_end`` (global): the fraction whose episode ended, terminated or truncated (500
  steps on CartPole): the next step starts a new episode there.

The Bernoulli-unit eligibility of stochastic hidden units is ``bernoulli_eligibility``
(``marl_net.perturbation_features``).
"""

from __future__ import annotations

import torch

from marl_net.context import StepContext
from marl_net.features import register_feature

RL_FEATURES = ("inner_reward", "reward_prediction_error", "output_eligibility", "reinforce_update", "next_input",
               "final_input", "inner_terminated", "inner_episode_end")


def _output_layer(ctx: StepContext, layer: int, weighted: bool) -> torch.Tensor:
    def compute():
        last = ctx.spec.num_layers - 1
        if layer != last:
            return torch.zeros_like(ctx.params[layer])
        step = ctx.rl
        dz = torch.nn.functional.one_hot(step.actions, step.probs.shape[-1]).to(step.probs.dtype) - step.probs
        dz = dz[..., :ctx.spec.layers[-1]]  # a reference logit (fixed at 0) has no synapses
        if weighted:
            dz = dz * (step.rewards - step.baseline.unsqueeze(1)).unsqueeze(-1)
        return torch.matmul(dz.transpose(1, 2), ctx.pre(last)) / dz.shape[1]

    return ctx.cached(f"{'reinforce_update' if weighted else 'output_eligibility'}/{layer}", compute)


@register_feature("inner_reward", "RL tasks: the step's mean reward over the inner copies, -E_t (global signal)",
                  global_signal=True)
def _inner_reward(ctx, l):
    return ctx.rl.rewards.mean(1).reshape(-1, 1, 1)


@register_feature("reward_prediction_error",
                  "RL tasks: mean reward minus the running reward baseline, reset with the network (global signal)",
                  global_signal=True)
def _reward_prediction_error(ctx, l):
    return ctx.rl.rpe.reshape(-1, 1, 1)


@register_feature("output_eligibility",
                  "RL tasks: output synapses' REINFORCE eligibility 1/B sum_b (onehot(a_b) - pi(x_b)) x_b; zero elsewhere")
def _output_eligibility(ctx, l):
    return _output_layer(ctx, l, weighted=False)


@register_feature("reinforce_update",
                  "RL tasks: 1/B sum_b (r_b - baseline) (onehot(a_b) - pi(x_b)) x_b for output synapses; zero elsewhere")
def _reinforce_update(ctx, l):
    return _output_layer(ctx, l, weighted=True)


def _input_layer(ctx: StepContext, layer: int, final: bool) -> torch.Tensor:
    def compute():
        if layer != 0:
            return torch.zeros_like(ctx.params[layer])
        x = ctx.rl.task.network_input(ctx.rl.next_state, final=final).to(ctx.params[0].dtype)
        if ctx.spec.bias:
            x = torch.cat([x, x.new_ones(x.shape[:-1] + (1,))], dim=-1)
        return x.mean(1).unsqueeze(1)  # [E, 1, cols], the same for every row

    return ctx.cached(f"{'final_input' if final else 'next_input'}/{layer}", compute)


@register_feature("next_input", "RL tasks: first-layer synapses: the input the network sees at the next step, "
                  "mean over inner copies; zero elsewhere")
def _next_input(ctx, l):
    return _input_layer(ctx, l, final=False)


@register_feature("final_input", "RL tasks: first-layer synapses: the input of the state the transition ended in "
                  "(before an inner episode's restart), mean over inner copies; zero elsewhere")
def _final_input(ctx, l):
    return _input_layer(ctx, l, final=True)


def _flag(ctx, index: int) -> torch.Tensor:
    terminated, truncated = ctx.rl.task.episode_flags(ctx.rl.next_state)
    flag = terminated if index == 0 else terminated | truncated
    return flag.to(ctx.loss.dtype).mean(1).reshape(-1, 1, 1)


@register_feature("inner_terminated", "RL tasks: fraction of inner copies whose episode terminated this step "
                  "(global signal)", global_signal=True)
def _inner_terminated(ctx, l):
    return _flag(ctx, 0)


@register_feature("inner_episode_end", "RL tasks: fraction of inner copies whose episode ended (terminated or "
                  "truncated) this step (global signal)", global_signal=True)
def _inner_episode_end(ctx, l):
    return _flag(ctx, 1)
