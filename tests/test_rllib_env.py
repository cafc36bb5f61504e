"""Why marl_net has its own RLlib adapter: RLlib's ParallelPettingZooEnv, wrapped around
network_weights_v0, resets unseeded at construction and takes its agents from the live set; ours
does neither, and ends the episode (``__all__``) exactly when the PettingZoo env does."""

from __future__ import annotations

import numpy as np
import pytest
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

from marl_net.envs import network_weights_v0
from marl_net.rllib.env import NetworkWeightsRLlibEnv

ENV = {"layers": [8, 6, 4], "max_cycles": 3}


def test_rllib_wrapper_resets_unseeded_at_construction_ours_does_not():
    theirs = ParallelPettingZooEnv(network_weights_v0.parallel_env(**ENV))
    assert theirs.par_env.core.is_reset  # a whole episode start, seeded from OS entropy, thrown away
    ours = NetworkWeightsRLlibEnv(ENV)
    assert not ours.core.is_reset and ours.core.data_gens is None


def test_ours_reports_per_agent_spaces_in_order_before_reset():
    par = network_weights_v0.parallel_env(**ENV)
    ours = NetworkWeightsRLlibEnv(ENV)
    assert ours.possible_agents == par.possible_agents  # the env's order, not a set's
    assert ours.agents == []
    for agent in ours.possible_agents:
        assert ours.get_observation_space(agent) is par.observation_space(agent) or \
            ours.get_observation_space(agent) == par.observation_space(agent)
        assert ours.get_action_space(agent) == par.action_space(agent)
    theirs = ParallelPettingZooEnv(network_weights_v0.parallel_env(**ENV))
    assert set(theirs.observation_space.spaces) == set(par.possible_agents)  # only after its hidden reset


def test_seeded_first_reset_is_reproducible():
    a, b = NetworkWeightsRLlibEnv(ENV), NetworkWeightsRLlibEnv(ENV)
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    assert all(np.array_equal(obs_a[k], obs_b[k]) for k in obs_a)


def test_all_is_set_exactly_at_the_end_of_an_episode_and_summary_recorded():
    env = NetworkWeightsRLlibEnv(ENV)
    obs, infos = env.reset(seed=0)
    zero = {a: np.zeros(env.get_action_space(a).shape, np.float32) for a in env.agents}
    for t in range(1, ENV["max_cycles"] + 1):
        obs, rewards, terms, truncs, infos = env.step(zero)
        last = t == ENV["max_cycles"]
        assert truncs["__all__"] is last and terms["__all__"] is False
        assert set(rewards) == set(env.possible_agents)
    assert env.agents == []
    summary = env.episode_summary
    assert summary["final_loss"] == pytest.approx(next(iter(infos.values()))["loss"])
    assert summary["num_agents"] == len(env.possible_agents) and summary["diverged"] is False
    with pytest.raises(ValueError, match="reset"):
        env.step(zero)


def test_divergence_ends_the_episode_as_termination():
    env = NetworkWeightsRLlibEnv({**ENV, "action_scale": 1.0e4, "max_cycles": 5})
    env.reset(seed=0)
    ones = {a: np.ones(env.get_action_space(a).shape, np.float32) for a in env.agents}
    _, rewards, terms, truncs, _ = env.step(ones)
    assert terms["__all__"] is True and truncs["__all__"] is False
    assert env.episode_summary["diverged"] is True
