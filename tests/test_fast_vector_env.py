"""The batched env view equals the PettingZoo env step by step, and autoresets the right copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.envs import network_weights_v0
from marl_net.fast.vector_env import VectorNetworkEnv
from marl_net.rewards import REWARDS

COPIES = 2
SEED = 7
CASES = [(r, o) for r in sorted(REWARDS) for o in ("outgoing", "incoming") if REWARDS[r].ownership in (None, o)]


def _stack(d: dict, agents) -> np.ndarray:
    return np.stack([np.asarray(d[a], dtype=np.float64) for a in agents])


@pytest.mark.parametrize("reward,ownership", CASES)
def test_vector_env_equals_pettingzoo_env_over_full_episodes(reward, ownership):
    check_vector_env_equals_pettingzoo(dict(layers=(5, 7, 3), ownership=ownership, reward=reward, max_cycles=4,
                                            batch_size=8))


@pytest.mark.parametrize("ownership", ["outgoing", "incoming"])
def test_vector_env_equals_pettingzoo_env_with_accumulator_features(ownership):
    """Accumulators (marl_net.accumulators) of a privileged and of a local, noise-drawing signal, over
    three episodes with two autoresets: their state is the core's, so the two views agree."""
    observations = ("weight", "gradient", "ema0.5[gradient]", "ema0.9[gradient]", "np_update", "ema0.99[np_update]",
                    "ema0.9[feedback_eligibility]")
    check_vector_env_equals_pettingzoo(dict(layers=(5, 7, 3), ownership=ownership, max_cycles=4, batch_size=8,
                                            observations=observations, bias=ownership == "incoming"))


def check_vector_env_equals_pettingzoo(kwargs):
    venv = VectorNetworkEnv(EnvConfig(**kwargs), copies=COPIES)
    envs = [network_weights_v0.parallel_env(**kwargs) for _ in range(COPIES)]
    obs, _ = venv.reset(seed=SEED)
    a, agents = venv.num_agents, envs[0].possible_agents
    for e, env in enumerate(envs):
        first, _ = env.reset(seed=SEED + e)
        np.testing.assert_allclose(_stack(first, agents), obs[e * a : (e + 1) * a].flatten(1).numpy(), atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    episodes_ended = 0
    for _ in range(3 * 4):  # three full episodes, two autoresets
        actions = torch.rand(venv.num_rows, venv.max_fan, generator=gen) * 2 - 1
        obs, rewards, terminated, truncated, info = venv.step(actions)
        for e, env in enumerate(envs):
            rows = slice(e * a, (e + 1) * a)
            acts = {ag: actions[rows][i].numpy() for i, ag in enumerate(agents)}
            p_obs, p_rew, p_term, p_trunc, p_info = env.step(acts)
            np.testing.assert_allclose(_stack(p_rew, agents), rewards[rows].numpy(), rtol=1e-5, atol=1e-6)
            assert [p_term[ag] for ag in agents] == terminated[rows].tolist()
            assert [p_trunc[ag] for ag in agents] == truncated[rows].tolist()
            assert p_info[agents[0]]["loss"] == pytest.approx(float(info["loss"][e]), rel=1e-5, abs=1e-7)
            if p_trunc[agents[0]] or p_term[agents[0]]:
                assert bool(info["ended"][e])
                np.testing.assert_allclose(_stack(p_obs, agents), info["final_obs"][rows].flatten(1).numpy(), atol=1e-5)
                p_obs, _ = env.reset()  # no seed: the copy's streams go on, as in the autoreset
                episodes_ended += 1
            np.testing.assert_allclose(_stack(p_obs, agents), obs[rows].flatten(1).numpy(), rtol=1e-5, atol=1e-5)
    assert episodes_ended == 3 * COPIES


def test_autoreset_resets_only_the_copies_that_ended():
    # A tiny divergence threshold ends copy episodes early, at different steps per copy.
    venv = VectorNetworkEnv(EnvConfig(layers=(4, 6, 2), max_cycles=50, divergence_threshold=2.0,
                                      action_scale=0.5), copies=4)
    obs, _ = venv.reset(seed=3)
    gen = torch.Generator().manual_seed(1)
    seen_partial = False
    for _ in range(30):
        before_t = venv.core.t.clone()
        initial_before = venv.core.initial_loss.clone()
        actions = torch.ones(venv.num_rows, venv.max_fan) * (torch.rand(1, generator=gen) * 2 - 1)
        obs, rewards, terminated, truncated, info = venv.step(actions)
        ended = info["ended"]
        # ended copies restart at step 0, the others advance by one
        assert torch.equal(venv.core.t, torch.where(ended, torch.zeros_like(before_t), before_t + 1))
        if ended.any():
            assert "final_obs" in info and "final_loss" in info
            assert torch.equal(info["initial_loss"][ended], initial_before[ended])  # the ended episodes' own
            rows = ended.repeat_interleave(venv.num_agents)
            # terminated rows got the divergence penalty; reset rows show a fresh first observation
            assert torch.all(rewards[terminated] == -venv.config.divergence_penalty)
            assert torch.all(obs[rows][..., :-1].abs() < 1e4) and torch.isfinite(obs).all()
            # the not-ended copies' final_obs rows are the returned observation
            assert torch.equal(info["final_obs"][~rows], obs[~rows])
            seen_partial |= bool((~ended).any())
        else:
            assert "final_obs" not in info
    assert seen_partial, "expected some steps where only part of the copies ended"


def test_flat_observations_and_bad_input():
    venv = VectorNetworkEnv(EnvConfig(layers=(4, 6, 2)), copies=3, flat_obs=True)
    with pytest.raises(ValueError, match="before reset"):
        venv.step(torch.zeros(venv.num_rows, venv.max_fan))
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3 * venv.num_agents, venv.max_fan * venv.num_features) == (venv.num_rows, *venv.obs_shape)
    with pytest.raises(ValueError, match="copies \\* agents"):
        venv.step(torch.zeros(venv.num_rows + 1, venv.max_fan))
    with pytest.raises(ValueError, match="NaN"):
        venv.step(torch.full((venv.num_rows, venv.max_fan), float("nan")))
    venv.step(torch.zeros(venv.num_rows, venv.max_fan))  # state not corrupted by the refused calls
