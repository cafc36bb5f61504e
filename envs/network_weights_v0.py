"""network_weights_v0: every neuron of a feed-forward network is an agent that sets its weights.

An episode is one inner training run of a freshly initialized network on a sampled task. At every
step each agent (neuron) outputs a change for each weight it owns; the environment applies the
changes, evaluates the inner loss on a new minibatch and pays every agent according to the reward
scheme. One policy shared by all neurons is therefore a learning rule, and training it is
meta-learning.

Usage::

    from marl_net.envs import network_weights_v0
    env = network_weights_v0.parallel_env(task="teacher_student", layers=(8, 16, 4),
                                          ownership="outgoing", reward="global_loss", max_cycles=50)
    obs, infos = env.reset(seed=0)
    actions = {a: env.action_space(a).sample() for a in env.agents}
    obs, rewards, terminations, truncations, infos = env.step(actions)

Three factories: ``parallel_env`` (the real, parallel-native class), ``raw_env`` (AEC through
``parallel_to_aec``) and ``env`` (AEC with PettingZoo's order-enforcing guard).

Agents
    ``neuron_<k>``, k counting every neuron from the first input. ``ownership="outgoing"``
    (default, Cai & Cheng): neuron i of layer l controls column i of ``W_l`` (its outgoing
    weights); agents are the neurons of every layer but the last. ``ownership="incoming"``
    (Chung): neuron j controls row j of the weights into it (and its bias); agents are the
    neurons of every layer but the first. All agents live and end together.

Action space
    ``Box(-1, 1, (K,), float32)``, K = the largest fan of any agent. Entry k changes the agent's
    k-th synapse by ``action_scale * action[k]``; entries past the agent's fan are ignored.
    Out-of-bound actions are clipped (``clip_actions=True``) or refused with ValueError.

Observation space
    ``Box(-1e4, 1e4, (K * (F + 1),), float32)``, a flattened ``[K, F + 1]`` table (reshape it
    with ``obs.reshape(K, F + 1)``): one row per synapse slot, one column per enabled feature (``observations=``, default all local features: weight, prev_delta, pre_activity,
    post_activity, pre_post_corr, rel_loss, rel_loss_change, step_fraction, layer_position), then the
    padding mask (1 for a real synapse). Privileged, non-local features (``gradient``) are
    available by name. Local three-factor signals of the hand rules are too: node / weight
    perturbation's (``np_eligibility``, ``np_error``, ``wp_perturbation``, ``wp_error``, ...) and
    feedback alignment's (``teaching_signal``, ``feedback_error``, ``feedback_eligibility``: the output
    error reaching each unit through fixed random feedback matrices, drawn per episode;
    ``feedback="dfa"`` or ``"fa"`` picks the pathway; see ``marl_net.feedback_alignment``).
    ``marl-net schemes`` lists them all. Accumulators ``ema<decay>[<signal>]`` (e.g.
    ``ema0.9[gradient]``, ``ema0.99[feedback_eligibility]``) carry a per-synapse exponential moving
    average of a per-synapse feature through the episode, zero at reset (``marl_net.accumulators``).
    Observations are always finite.

Rewards
    Chosen by name with ``reward=`` (``global_loss``, ``loss_improvement``, ``weight_max`` (needs
    ``ownership="incoming"``), ``difference``, or any registered scheme), optionally mixed with
    the global signal ``-E_t`` by ``local_ratio``; ``reward_unit="percent"`` pays in percent of
    the episode's initial loss (the same scale on every task). See ``marl_net.rewards``.

RL inner tasks
    With ``task="bandit" | "harlow" | "maze" | "cartpole"`` the controlled network is itself an
    RL agent: a softmax policy over the task's actions acting in ``batch_size`` parallel copies
    of the task instance, one inner time step per env step (the reset takes the first), its
    input the task's observation plus the previous action one-hot and the previous reward (RL²).
    The inner loss is the negative mean reward of the step, so every loss-based scheme applies.
    Ready-made settings: ``marl_net.tasks.rl.preset(name)``, name in bandit2, bandit10, harlow,
    maze, maze_large, cartpole. RL signals as features: ``inner_reward``,
    ``reward_prediction_error``, ``output_eligibility``, ``reinforce_update``
    (``marl_net.rl_features``). See docs/rl_tasks.md.

Episode end
    Truncation after ``max_cycles`` steps. Termination when the network diverges (non-finite loss
    or weights, or either beyond ``divergence_threshold``): every agent gets
    ``-divergence_penalty`` on that step and observations stay finite.

Arguments
    task ("teacher_student" | "digits" | "mnist" | "multiplexer" | "bandit" | "harlow" | "maze" |
    "cartpole"), task_kwargs (dict, e.g.
    ``{"data_dir": ...}`` for mnist), split ("train" | "heldout"), layers (sizes including input
    and output), ownership, reward, local_ratio, reward_unit, max_cycles, batch_size, action_scale,
    clip_actions, hidden_activation, output_activation, bias, init_gain, observations,
    feedback ("dfa" | "fa": the feedback features' pathway), divergence_threshold, divergence_penalty, crash_probability (fault-injection for tests).
    Misspelled arguments raise ValueError with the closest valid name.

Version history
    v0: initial release; RL inner tasks (bandit, harlow, maze, cartpole) and RL features added.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import EzPickle, seeding
from pettingzoo import ParallelEnv
from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import parallel_to_aec

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.observations import OBS_LIMIT


class parallel_env(ParallelEnv, EzPickle):
    metadata = {"name": "network_weights_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, render_mode: str | None = None, **kwargs):
        EzPickle.__init__(self, render_mode=render_mode, **kwargs)
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}: network_weights_v0 does not render; pass None")
        self.render_mode = None
        self.config = EnvConfig.from_kwargs(**kwargs)
        self.core = NetworkWeightsCore(self.config, copies=1)
        own = self.core.ownership
        self.possible_agents = list(own.agent_ids)
        self.agents: list[str] = []
        self._obs_space = spaces.Box(-OBS_LIMIT, OBS_LIMIT, (own.max_fan * self.core.num_features,), np.float32)
        self._act_space = spaces.Box(-1.0, 1.0, (own.max_fan,), np.float32)
        self.observation_spaces = {a: self._obs_space for a in self.possible_agents}
        self.action_spaces = {a: self._act_space for a in self.possible_agents}
        self.np_random, _ = seeding.np_random(None)
        self._ever_reset = False

    def observation_space(self, agent: str) -> spaces.Box:
        self._check_known(agent)
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Box:
        self._check_known(agent)
        return self._act_space

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
            self.core.seed([int(seed)])
        elif self.core.data_gens is None:
            self.core.seed([int(self.np_random.integers(2**31))])
        obs = self.core.reset()
        self.agents = list(self.possible_agents)
        self._ever_reset = True
        loss = float(self.core.loss[0])
        return self._obs_dict(obs), {a: {"loss": loss, "step": 0} for a in self.agents}

    def step(self, actions: dict):
        if not self.agents:
            if not self._ever_reset:
                raise ValueError("step() before reset(): call reset() first")
            raise ValueError("the episode has ended (all agents are done): call reset() before step()")
        result = self.core.step(self._actions_tensor(actions))
        agents = self.agents
        obs = self._obs_dict(result.obs)
        rewards = dict(zip(agents, result.rewards[0].tolist()))
        term, trunc = bool(result.terminated[0]), bool(result.truncated[0])
        terminations = {a: term for a in agents}
        truncations = {a: trunc for a in agents}
        info = {"loss": float(result.loss[0]), "diverged": term, "step": int(self.core.t[0])}
        infos = {a: dict(info) for a in agents}
        if term or trunc:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def close(self):
        pass

    def render(self):
        return None

    # ---------------------------------------------------------------- helpers
    def _check_known(self, agent: str) -> None:
        if agent not in self.core.ownership.index_of:
            raise KeyError(f"unknown agent {agent!r}; agents are {self.possible_agents[0]!r}..{self.possible_agents[-1]!r}")

    def _obs_dict(self, obs: torch.Tensor) -> dict[str, np.ndarray]:
        arr = obs[0].flatten(1).cpu().numpy().astype(np.float32, copy=False)
        return {a: arr[i] for i, a in enumerate(self.possible_agents)}

    def _actions_tensor(self, actions: dict) -> torch.Tensor:
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict {{agent_id: array of shape {self._act_space.shape}}}")
        for agent in actions:
            if agent not in self.core.ownership.index_of:
                raise KeyError(f"action for unknown agent {agent!r}; act only for env.agents")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise KeyError(f"missing actions for live agents {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                           "pass one action for every agent in env.agents")
        k = self._act_space.shape[0]
        out = np.empty((1, len(self.possible_agents), k), dtype=np.float32)
        for i, agent in enumerate(self.possible_agents):
            a = np.asarray(actions[agent])
            if a.shape != (k,):
                raise ValueError(f"action of {agent!r} has shape {a.shape}; expected ({k},)")
            if not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"action of {agent!r} has dtype {a.dtype}; pass floats (np.float32)")
            out[0, i] = a
        return torch.from_numpy(out)


def raw_env(**kwargs):
    """The AEC version (``parallel_to_aec`` of :class:`parallel_env`)."""
    return parallel_to_aec(parallel_env(**kwargs))


def env(**kwargs):
    """The AEC version with PettingZoo's guards (order enforcing)."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))
