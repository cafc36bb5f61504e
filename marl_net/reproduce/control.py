"""Chung's control tasks (CartPole-v1, Acrobot-v1, LunarLander-v3): episodic actor-critic.

One gymnasium environment per seed in a vector env (same-step autoreset, so every step is a real
transition and the final observation of an episode comes in ``info["final_obs"]``). At each step:

    delta_t = R_t + gamma * (1 - terminated) * V(S_{t+1}) - V(S_t)

(time-limit truncation bootstraps from the final observation). The critic takes a TD(lambda) step
and the actor's rule is paid delta_t. Every copy keeps stepping until the slowest one has finished
its episodes; only its first ``episodes`` returns count.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from marl_net.reproduce.agent import ActorLearner, Critic
from marl_net.reproduce.methods import Method, RuleOptions
from marl_net.reproduce.randomness import STREAM_ACTOR, STREAM_CRITIC, UniformStream, copy_generators


def make_envs(env_id: str, n: int) -> SyncVectorEnv:
    try:
        return SyncVectorEnv([partial(gym.make, env_id) for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)
    except gym.error.DependencyNotInstalled as exc:  # LunarLander: gymnasium's box2d package imports pygame
        raise ValueError(f"{env_id} cannot be built here ({exc}); install the missing package, e.g. "
                         "`pip install pygame` next to box2d for LunarLander") from exc


def final_observations(obs: np.ndarray, info: dict) -> np.ndarray:
    """``obs`` with each finished copy's row replaced by its final observation."""
    mask = info.get("_final_obs")
    if mask is None or not mask.any():
        return obs
    out = obs.copy()
    for i in np.flatnonzero(mask):
        out[i] = info["final_obs"][i]
    return out


def run_control(task, method: Method, seeds, episodes: int, opts: RuleOptions, device="cpu",
                on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Train one actor-critic per seed for ``episodes`` episodes; returns returns ``[E, episodes]``."""
    seeds = [int(s) for s in seeds]
    e = len(seeds)
    envs = make_envs(task.env_id, e)
    try:
        obs, _ = envs.reset(seed=seeds)
        n_in, n_actions = obs.shape[1], int(envs.single_action_space.n)
        gens = copy_generators(seeds, STREAM_ACTOR, device)
        learner = ActorLearner(method, opts, gens, n_in, n_actions, task.actor_lr, task.actor_lr_end,
                               task.lr_decay_steps, task.output_temperature, device=device)
        critic = Critic(copy_generators(seeds, STREAM_CRITIC, device), n_in, task.critic_lr, task.critic_lr_end,
                        task.lr_decay_steps, trace_decay=task.gamma * task.trace_lambda, device=device)
        stream = UniformStream(gens, learner.actor.num_uniforms)
        returns = np.full((e, episodes), np.nan)
        done_count = np.zeros(e, dtype=int)
        ep_return = np.zeros(e)
        start = torch.ones(e, dtype=torch.bool, device=device)
        x = torch.as_tensor(obs, dtype=torch.float32, device=device)
        v, c_in, c_pre = critic.value(x.unsqueeze(1))
        row = 0
        while done_count.min() < episodes:
            step = learner.act(x, stream.next())
            obs, reward, terminated, truncated, info = envs.step(step.action.cpu().numpy())
            final = torch.as_tensor(final_observations(obs, info), dtype=torch.float32, device=device)
            x_next = torch.as_tensor(obs, dtype=torch.float32, device=device)
            # row 0: the state the transition ended in; row 1: where the next step starts
            v_pair, n_in_cache, n_pre_cache = critic.value(torch.stack([final, x_next], 1))
            r = torch.as_tensor(reward, dtype=torch.float32, device=device)
            alive = torch.as_tensor(~terminated, dtype=torch.float32, device=device)
            td = r + task.gamma * alive * v_pair[:, 0] - v[:, row]
            critic.learn(c_in, c_pre, row, td, start)
            learner.learn(step, td, start)
            ep_return += reward
            finished = terminated | truncated
            for i in np.flatnonzero(finished):
                if done_count[i] < episodes:
                    returns[i, done_count[i]] = ep_return[i]
                done_count[i] += 1
                ep_return[i] = 0.0
            if on_progress is not None and finished.any():
                recent = [returns[i, max(0, min(done_count[i], episodes) - 20):min(done_count[i], episodes)] for i in range(e)]
                on_progress(int(min(done_count.min(), episodes)), float(np.mean(np.concatenate(recent))))
            start = torch.as_tensor(finished, device=device)
            x, v, c_in, c_pre, row = x_next, v_pair, n_in_cache, n_pre_cache, 1
        return returns
    finally:
        envs.close()
