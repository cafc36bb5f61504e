"""network_weights_v0 as an RLlib ``MultiAgentEnv``: a thin adapter of our own.

RLlib ships ``ParallelPettingZooEnv``, but for this env it is wrong in three ways (each shown by
``tests/test_rllib_env.py``):

- it calls ``reset()`` without a seed inside its constructor: the network is built and the core's
  random streams are seeded from OS entropy before RLlib's seeded first reset ever happens, and
  every env runner pays for a full episode start it throws away;
- it takes the spaces and the agent list from the *live* agents after that reset, through a
  ``set`` (so the agent order is hash-random), instead of from ``possible_agents``;
- it sets ``__all__`` to "every agent in this step's dict is terminated" (or truncated), so an
  episode whose agents end in a mix of termination and truncation never ends.

This adapter builds nothing until the first ``reset``, exposes ``possible_agents`` and the
per-agent spaces (the same objects for every agent) from construction, and ends the episode
(``__all__``) exactly when the PettingZoo env empties its ``agents`` list: ``terminateds["__all__"]``
if any agent terminated (divergence), else ``truncateds["__all__"]``.

It also keeps a summary of the last finished episode (``episode_summary``: initial and final inner
loss, whether it diverged), which ``marl_net.rllib.callbacks`` logs.

Use::

    from marl_net.rllib.env import NetworkWeightsRLlibEnv
    config.environment(NetworkWeightsRLlibEnv, env_config={"task": "teacher_student", "reward": "difference"})

or by name after :func:`register` (``config.environment("network_weights_v0", ...)``).
"""

from __future__ import annotations

from typing import Any

from pettingzoo import ParallelEnv
from ray.rllib.env.multi_agent_env import MultiAgentEnv

ENV_NAME = "network_weights_v0"


class ParallelEnvAdapter(MultiAgentEnv):
    """Any PettingZoo ``ParallelEnv`` whose spaces are known before reset, as a ``MultiAgentEnv``."""

    def __init__(self, par_env: ParallelEnv):
        super().__init__()
        self.par_env = par_env
        self.possible_agents = list(par_env.possible_agents)
        self.agents = []
        self.observation_spaces = {a: par_env.observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: par_env.action_space(a) for a in self.possible_agents}
        self.episode_summary: dict[str, Any] | None = None
        self._initial_loss: float | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        self._initial_loss = _loss_of(infos)
        return obs, infos or {}

    def step(self, action_dict: dict):
        obs, rewards, terminateds, truncateds, infos = self.par_env.step(action_dict)
        self.agents = list(self.par_env.agents)
        done = not self.agents
        ended_by_termination = done and any(terminateds.values())
        terminateds = dict(terminateds, __all__=ended_by_termination)
        truncateds = dict(truncateds, __all__=done and not ended_by_termination)
        if done:
            self.episode_summary = {
                "initial_loss": self._initial_loss,
                "final_loss": _loss_of(infos),
                "diverged": ended_by_termination,
                "num_agents": len(self.possible_agents),
            }
        return obs, rewards, terminateds, truncateds, infos

    def close(self):
        self.par_env.close()

    def render(self):
        return self.par_env.render()


def _loss_of(infos: dict | None) -> float | None:
    for info in (infos or {}).values():
        if isinstance(info, dict) and "loss" in info:
            return float(info["loss"])
    return None


class NetworkWeightsRLlibEnv(ParallelEnvAdapter):
    """``network_weights_v0.parallel_env(**env_config)`` for RLlib; ``env_config`` holds
    :class:`marl_net.config.EnvConfig` keyword arguments (misspellings raise ValueError)."""

    def __init__(self, env_config: dict | None = None):
        from marl_net.envs import network_weights_v0

        env_config = dict(env_config or {})  # an EnvContext is a dict; keep only the kwargs
        super().__init__(network_weights_v0.parallel_env(**env_config))

    @property
    def core(self):
        """The batched dynamics under the env (E = 1), e.g. to read the reward scheme in use."""
        return self.par_env.core


def register(name: str = ENV_NAME) -> str:
    """Register the env with Ray Tune's registry under ``name`` and return the name."""
    from ray.tune.registry import register_env

    register_env(name, lambda cfg: NetworkWeightsRLlibEnv(cfg))
    return name
