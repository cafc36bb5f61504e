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
CASES = [(r, o) for r in sorted(REWARDS) for o in ("outgoing", "incoming")
         if REWARDS[r].ownership in (None, o) and not REWARDS[r].action_values]  # RL-only: tests/test_rl_env.py


def _stack(d: dict, agents) -> np.ndarray:
    return np.stack([np.asarray(d[a], dtype=np.float64) for a in agents])


def _assert_blocks_equal_padded(blocks: list, padded: torch.Tensor, venv: VectorNetworkEnv) -> None:
    """The block layout's rows are, bit for bit, the padded table's rows with the padding cut."""
    grid = padded.view(venv.copies, venv.num_agents, venv.max_fan, -1)
    assert len(blocks) == len(venv.blocks)
    for x, b in zip(blocks, venv.blocks):
        assert x.shape == (venv.copies * (b.stop - b.start), b.fan, venv.num_features)
        assert torch.equal(x, grid[:, b.start : b.stop, : b.fan].reshape(x.shape))
        assert torch.equal(x[..., -1], torch.ones_like(x[..., -1]))  # no padding slot in a block


def _step_blocks_alike(benv, actions, obs, rewards, terminated, truncated, info, venv) -> None:
    """Step the block-layout env ``benv`` with the padded ``actions`` cut to blocks and check it
    against the padded env's step results."""
    grid = actions.view(venv.copies, venv.num_agents, venv.max_fan)
    b_actions = [grid[:, b.start : b.stop, : b.fan].reshape(-1, b.fan) for b in benv.blocks]
    b_obs, b_rewards, b_terminated, b_truncated, b_info = benv.step(b_actions)
    _assert_blocks_equal_padded(b_obs, obs, venv)
    assert torch.equal(b_rewards, rewards) and torch.equal(b_info["loss"], info["loss"])
    assert torch.equal(b_terminated, terminated) and torch.equal(b_truncated, truncated)
    assert torch.equal(b_info["ended"], info["ended"]) and ("final_obs" in b_info) == ("final_obs" in info)
    if "final_obs" in info:
        _assert_blocks_equal_padded(b_info["final_obs"], info["final_obs"], venv)


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
    """The PettingZoo env, the padded layout and the block layout, stepped with the same actions
    over three full episodes (two autoresets): equal observations, rewards, flags and losses."""
    venv = VectorNetworkEnv(EnvConfig(**kwargs), copies=COPIES)
    benv = VectorNetworkEnv(EnvConfig(**kwargs), copies=COPIES, layout="blocks")
    envs = [network_weights_v0.parallel_env(**kwargs) for _ in range(COPIES)]
    obs, _ = venv.reset(seed=SEED)
    b_obs, _ = benv.reset(seed=SEED)
    _assert_blocks_equal_padded(b_obs, obs, venv)
    a, agents = venv.num_agents, envs[0].possible_agents
    for e, env in enumerate(envs):
        first, _ = env.reset(seed=SEED + e)
        np.testing.assert_allclose(_stack(first, agents), obs[e * a : (e + 1) * a].flatten(1).numpy(), atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    episodes_ended = 0
    for _ in range(3 * 4):  # three full episodes, two autoresets
        actions = torch.rand(venv.num_rows, venv.max_fan, generator=gen) * 2 - 1
        obs, rewards, terminated, truncated, info = venv.step(actions)
        _step_blocks_alike(benv, actions, obs, rewards, terminated, truncated, info, venv)
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
    # A tiny divergence threshold ends copy episodes early, at different steps per copy. The block
    # layout, stepped alongside, resets the same copies and stays equal.
    config = EnvConfig(layers=(4, 6, 2), max_cycles=50, divergence_threshold=2.0, action_scale=0.5)
    venv = VectorNetworkEnv(config, copies=4)
    benv = VectorNetworkEnv(config, copies=4, layout="blocks")
    obs, _ = venv.reset(seed=3)
    benv.reset(seed=3)
    gen = torch.Generator().manual_seed(1)
    seen_partial = False
    for _ in range(30):
        before_t = venv.core.t.clone()
        initial_before = venv.core.initial_loss.clone()
        actions = torch.ones(venv.num_rows, venv.max_fan) * (torch.rand(1, generator=gen) * 2 - 1)
        obs, rewards, terminated, truncated, info = venv.step(actions)
        _step_blocks_alike(benv, actions, obs, rewards, terminated, truncated, info, venv)
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


def test_block_layout_refuses_padded_or_misshapen_actions_and_keeps_its_state():
    benv = VectorNetworkEnv(EnvConfig(layers=(4, 6, 2)), copies=2, layout="blocks")
    obs, _ = benv.reset(seed=0)
    good = [torch.zeros(x.shape[:2]) for x in obs]
    with pytest.raises(ValueError, match="list of 2 action tensors"):
        benv.step(torch.zeros(benv.num_rows, benv.max_fan))
    with pytest.raises(ValueError, match="copies \\* agents, fan"):
        benv.step([good[0], torch.zeros(good[1].shape[0], good[1].shape[1] + 1)])
    with pytest.raises(ValueError, match="NaN"):
        benv.step([good[0], torch.full_like(good[1], float("nan"))])
    with pytest.raises(ValueError, match="layout='rows' is unknown"):
        VectorNetworkEnv(EnvConfig(layers=(4, 6, 2)), layout="rows")
    before = [p.clone() for p in benv.core.params]
    benv.step(good)  # the refused calls changed nothing: zero actions keep the weights
    assert all(torch.equal(p, q) for p, q in zip(before, benv.core.params))


@pytest.mark.parametrize("ownership,feedback", [("outgoing", "dfa"), ("incoming", "fa")])
def test_block_layout_writes_every_registered_feature_as_the_padded_layout(ownership, feedback):
    """Every feature in the registry (privileged and feedback ones included; RL ones need an RL task) reaches the block layout
    with the padded layout's numbers, bit for bit, over steps and an autoreset."""
    from marl_net.accumulators import signals_of
    from marl_net.observations import FEATURES
    from marl_net.rl_features import RL_FEATURES  # need an RL task: not on this supervised network

    # (an accumulator of an RL feature, registered by an earlier test in the process, needs one too)
    names = sorted(n for n in FEATURES if signals_of([n])[0] not in RL_FEATURES)
    config = EnvConfig(layers=(5, 7, 3), ownership=ownership, max_cycles=2, batch_size=8, feedback=feedback,
                       observations=tuple(names))
    venv, benv = VectorNetworkEnv(config, copies=2), VectorNetworkEnv(config, copies=2, layout="blocks")
    obs, _ = venv.reset(seed=1)
    b_obs, _ = benv.reset(seed=1)
    _assert_blocks_equal_padded(b_obs, obs, venv)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        actions = torch.rand(venv.num_rows, venv.max_fan, generator=gen) - 0.5
        obs, rewards, terminated, truncated, info = venv.step(actions)
        _step_blocks_alike(benv, actions, obs, rewards, terminated, truncated, info, venv)
