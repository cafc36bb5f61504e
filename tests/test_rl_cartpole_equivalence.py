"""Weight Max on CartPole inside the env equals ``marl-net reproduce chung`` (issue 19, item 3).

The env runs ``network_weights_v0``'s core on ``cartpole`` with Chung's network interface and
random draws (``WeightMaxPolicy.env_kwargs``: 4-64-32-1 network, Bernoulli hidden units, one
logistic output, CartPole-v1's reward of 1 per step, ``rl_draws="chung"``), driven by the in-env
``weight_max`` policy; the trainer is ``marl_net.reproduce.control.run_control`` with method
``weight_max`` and the task's own settings (``TASKS["cartpole"]``: step sizes and their decay, the
64-32 TD(lambda) critic, gamma 0.98, lambda 0.8), two seeds run as one batch in both.

What is equal, bit for bit: every episode's return (the env's sampled actions, hence its CartPole
trajectories, are the trainer's) and the actor's weights after every update. Under
``rl_draws="chung"`` the env sums each layer's pre-activation with the actor's own function
(``marl_net.rules.reinforce.coagent_preact``); the env's default ``h W^T + b`` sums in another
order, and the weights would drift apart in the last float32 bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.policies.rl_hand_rules import WeightMaxPolicy
from marl_net.reproduce import agent
from marl_net.reproduce.chung import TASKS
from marl_net.reproduce.control import run_control
from marl_net.reproduce.methods import METHODS, RuleOptions

SEEDS = [3, 7]
STEPS = 400  # env steps: about 20 episodes per seed for the untrained network
TASK = TASKS["cartpole"]


def flat_weights(core: NetworkWeightsCore) -> torch.Tensor:
    """The core's weights in the trainer's flat order ``[W_0, b_0, W_1, b_1, ...]`` ``[E, P]``."""
    e = core.copies
    return torch.cat([torch.cat([p[..., :-1].reshape(e, -1), p[..., -1]], 1) for p in core.params], 1)


def run_env(steps: int, lr_factor: float = 1.0) -> tuple[list[list[float]], list[torch.Tensor]]:
    """The in-env lifetime: each seed's completed episode returns and the weights after every step."""
    config = EnvConfig(**WeightMaxPolicy.env_kwargs(max_cycles=steps))
    core = NetworkWeightsCore(config, copies=len(SEEDS))
    core.seed(SEEDS)
    obs = core.reset()
    policy = WeightMaxPolicy(config, SEEDS, lr=[r * lr_factor for r in TASK.actor_lr],
                             lr_end=[r * lr_factor for r in TASK.actor_lr_end], decay_steps=TASK.lr_decay_steps,
                             critic_lr=TASK.critic_lr, critic_lr_end=TASK.critic_lr_end, gamma=TASK.gamma,
                             lam=TASK.trace_lambda)
    returns: list[list[float]] = [[] for _ in SEEDS]
    running = np.zeros(len(SEEDS))
    weights = []

    def record():
        running[:] += core.rl_state["prev_reward"][:, 0].numpy()
        for i in np.flatnonzero((core.rl_state["episode_steps"][:, 0] == 0).numpy()):  # episode i ended
            returns[i].append(float(running[i]))
            running[i] = 0.0

    record()
    for _ in range(steps):
        obs = core.step(policy.act(obs)).obs
        weights.append(flat_weights(core))
        record()
    return returns, weights


def run_trainer(episodes: int, monkeypatch) -> tuple[np.ndarray, list[torch.Tensor]]:
    """``marl-net reproduce chung``'s CartPole trainer (``run_control``), recording the actor's
    weights after every update (the recorder only copies them)."""
    weights = []
    learn = agent.ActorLearner.learn

    def recording_learn(self, *args):
        learn(self, *args)
        weights.append(self.flat.clone())

    monkeypatch.setattr(agent.ActorLearner, "learn", recording_learn)
    returns = run_control(TASK, METHODS["weight_max"], SEEDS, episodes, RuleOptions(gamma=TASK.gamma, lam=TASK.trace_lambda))
    return returns, weights


def test_in_env_weight_max_returns_equal_chung_trainer(monkeypatch):
    torch.set_num_threads(1)
    env_returns, env_weights = run_env(STEPS)
    episodes = min(len(r) for r in env_returns)
    assert episodes >= 15, env_returns  # enough episodes for the comparison to mean something
    returns, weights = run_trainer(episodes, monkeypatch)
    np.testing.assert_array_equal(returns, np.array([r[:episodes] for r in env_returns]))
    steps = min(len(weights), len(env_weights))
    assert steps >= 300
    moved = (weights[steps - 1] - weights[0]).abs().max()
    assert moved > 1e-2  # the weights have learned
    unequal = [t for t in range(steps) if not torch.equal(env_weights[t], weights[t])]
    assert not unequal, f"weights differ after updates {unequal[:5]}..."


def test_comparison_sees_the_step_size():
    """The returns above are not the untrained network's whatever the learning: twice the actor's
    step sizes changes them within the same lifetime."""
    torch.set_num_threads(1)
    base, _ = run_env(STEPS)
    faster, _ = run_env(STEPS, lr_factor=2.0)
    n = min(len(r) for r in base + faster)
    assert [r[:n] for r in base] != [r[:n] for r in faster]


def test_chung_draws_bad_input():
    kwargs = WeightMaxPolicy.env_kwargs(max_cycles=5)
    with pytest.raises(ValueError, match="rl_draws='chung'.*batch_size=1"):
        EnvConfig(**{**kwargs, "batch_size": 2})
    with pytest.raises(ValueError, match="rl_draws='chung'.*task='cartpole'"):
        EnvConfig(**{**kwargs, "task": "bandit", "task_kwargs": {}, "layers": (4, 64, 32, 2)})
    with pytest.raises(ValueError, match="rl_draws='often' is unknown"):
        EnvConfig(**{**kwargs, "rl_draws": "often"})
    with pytest.raises(ValueError, match="reference_logit=1 must be True or False"):
        NetworkWeightsCore(EnvConfig(**{**kwargs, "task_kwargs": {"reference_logit": 1}}))
    config = EnvConfig(**kwargs)
    core = NetworkWeightsCore(config, copies=2)
    core.seed(SEEDS)
    core.reset()
    with pytest.raises(ValueError, match="reset every copy"):
        core.reset(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="pass the core's seeds"):
        WeightMaxPolicy(config, [1, 2, 3], lr=TASK.actor_lr).reset(2)
    with pytest.raises(ValueError, match="one actor step size per weight layer"):
        WeightMaxPolicy(config, SEEDS, lr=(0.1, 0.1))


def test_episode_boundary_features_on_cartpole():
    """``final_input`` is where the transition ended (Gymnasium's CartPole stepped from the state
    before it with the action taken), ``next_input`` the next step's input, and the flags mark the
    time-limit truncations (episodes of 2 transitions; the reset's is the first)."""
    import gymnasium as gym

    names = ("pre_activity", "next_input", "final_input", "inner_terminated", "inner_episode_end")
    config = EnvConfig(task="cartpole", task_kwargs={"max_episode_steps": 2, "previous_action_reward": False},
                       layers=(4, 5, 2), ownership="incoming", batch_size=1, max_cycles=6, observations=names)
    core = NetworkWeightsCore(config, copies=1)
    core.seed([5])
    obs = core.reset()
    col = {n: i for i, n in enumerate(names)}
    first_layer = lambda o, n: o[0, 0, :4, col[n]]  # agent 0 is a first-layer neuron: its 4 input synapses
    reference = gym.make("CartPole-v1").unwrapped
    reference.reset(seed=0)
    ends = []
    for k in range(1, 7):
        before, prev_obs = core.rl_state["physics"][0, 0].numpy().copy(), obs
        obs = core.step(torch.zeros(1, *core.ownership.mask.shape)).obs
        assert torch.equal(first_layer(prev_obs, "next_input"), first_layer(obs, "pre_activity"))
        reference.state = before
        ended_at, *_ = reference.step(int(core.rl_state["prev_action"][0, 0]))
        assert torch.equal(first_layer(obs, "final_input"), torch.from_numpy(ended_at))
        ended = float(obs[0, 0, 0, col["inner_episode_end"]])
        assert float(obs[0, 0, 0, col["inner_terminated"]]) == 0.0  # a pole does not fall in 2 steps
        assert torch.equal(first_layer(obs, "final_input"), first_layer(obs, "next_input")) == (ended == 0.0)
        ends.append(ended)
    assert ends == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]  # the reset's transition was the first of its episode
