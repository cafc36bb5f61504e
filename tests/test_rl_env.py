"""RL inner tasks inside network_weights_v0: PettingZoo API for every RL task and ownership, the
batched env equal to the PettingZoo env over full episodes, the RL features on hand-computed
values, the reward baseline, resumable state, and the refusals."""

import warnings

import numpy as np
import pytest
import torch
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.envs import network_weights_v0
from marl_net.fast.vector_env import VectorNetworkEnv
from marl_net.rl_features import RL_FEATURES
from marl_net.tasks.rl import preset

RL_OBS = ("weight", "pre_activity", "post_activity", "inner_reward", "reward_prediction_error",
          "output_eligibility", "reinforce_update", "next_input", "final_input", "inner_terminated",
          "inner_episode_end", "rel_loss", "step_fraction")
SMALL = {
    "bandit": dict(task="bandit", task_kwargs={"arms": 3}, layers=(5, 6, 3)),
    "harlow": dict(task="harlow", layers=(17, 6, 3)),
    "maze": dict(task="maze", task_kwargs={"size": 5}, layers=(14, 6, 4)),
    "cartpole": dict(task="cartpole", task_kwargs={"max_episode_steps": 3}, layers=(7, 6, 2)),
}


def small(task, ownership="outgoing", **extra):
    kw = dict(SMALL[task], ownership=ownership, max_cycles=6, batch_size=4, observations=RL_OBS)
    if ownership == "incoming":
        kw["bias"] = True
    kw.update(extra)
    return kw


CASES = [(t, o, r) for t in SMALL for o in ("outgoing", "incoming")
         for r in (("global_loss", "loss_improvement") + (("weight_max",) if o == "incoming" else ()))]
CASES += [("bandit", o, "expected_regret") for o in ("outgoing", "incoming")]


@pytest.mark.parametrize("task,ownership,reward", CASES)
def test_pettingzoo_api_tests_pass_for_rl_tasks(task, ownership, reward):
    kwargs = small(task, ownership, reward=reward)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(network_weights_v0.parallel_env(**kwargs), num_cycles=10)
        api_test(parallel_to_aec(network_weights_v0.parallel_env(**kwargs)), num_cycles=10)


def _stack(d, agents):
    return np.stack([np.asarray(d[a], dtype=np.float64) for a in agents])


FEEDBACK_OBS = ("weight", "teaching_signal", "feedback_error", "feedback_eligibility", "reinforce_update")


@pytest.mark.parametrize("task,ownership,extra", [
    ("bandit", "outgoing", {}), ("harlow", "incoming", {}), ("maze", "outgoing", {}), ("cartpole", "incoming", {}),
    ("harlow", "outgoing", {"observations": FEEDBACK_OBS, "feedback": "dfa"}),  # feedback matrices drawn at resets
    ("bandit", "incoming", {"observations": ("weight", "ema0.9[reinforce_update]", "reward_prediction_error")}),
    ("bandit", "outgoing", {"reward": "expected_regret"}),
])
def test_vector_env_equals_pettingzoo_env_over_full_episodes(task, ownership, extra):
    copies, seed, kwargs = 2, 5, small(task, ownership, max_cycles=4, **extra)
    venv = VectorNetworkEnv(EnvConfig(**kwargs), copies=copies)
    envs = [network_weights_v0.parallel_env(**kwargs) for _ in range(copies)]
    obs, _ = venv.reset(seed=seed)
    a, agents = venv.num_agents, envs[0].possible_agents
    for e, env in enumerate(envs):
        first, _ = env.reset(seed=seed + e)
        np.testing.assert_allclose(_stack(first, agents), obs[e * a:(e + 1) * a].flatten(1).numpy(), atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    ended, rewards_seen = 0, []
    for _ in range(3 * 4):  # three whole episodes, two autoresets per copy
        actions = torch.rand(venv.num_rows, venv.max_fan, generator=gen) * 2 - 1
        obs, rewards, terminated, truncated, info = venv.step(actions)
        rewards_seen.append(info["loss"])
        for e, env in enumerate(envs):
            rows = slice(e * a, (e + 1) * a)
            p_obs, p_rew, p_term, p_trunc, p_info = env.step({ag: actions[rows][i].numpy() for i, ag in enumerate(agents)})
            np.testing.assert_allclose(_stack(p_rew, agents), rewards[rows].numpy(), rtol=1e-5, atol=1e-6)
            assert p_info[agents[0]]["loss"] == pytest.approx(float(info["loss"][e]), abs=1e-6)
            if p_trunc[agents[0]] or p_term[agents[0]]:
                np.testing.assert_allclose(_stack(p_obs, agents), info["final_obs"][rows].flatten(1).numpy(), atol=1e-5)
                p_obs, _ = env.reset()
                ended += 1
            np.testing.assert_allclose(_stack(p_obs, agents), obs[rows].flatten(1).numpy(), rtol=1e-5, atol=1e-5)
    assert ended == 3 * copies
    if task != "cartpole":  # (CartPole pays 1 on every step)
        assert len({round(float(x), 4) for x in torch.cat(rewards_seen)}) > 1  # the rewards actually varied


def _core(name="bandit", copies=2, **extra):
    core = NetworkWeightsCore(EnvConfig(**small(name, **extra)), copies=copies)
    core.seed(list(range(copies)))
    return core


def _feature(core, obs, name):
    """Feature ``name`` in weight space of the output layer, read from agent-space observations."""
    col = core.config.observations.index(name)
    return core.ownership.from_agents(obs[..., col])[-1]


def test_output_eligibility_and_reinforce_update_match_a_hand_computation():
    core = _core("harlow", copies=2, batch_size=5)
    obs = core.reset()
    for _ in range(3):
        x = core.task.network_input(core.rl_state)  # the input the next step's forward pass sees
        baseline = core.baseline.clone()
        result = core.step(torch.rand(2, core.ownership.num_agents, core.ownership.max_fan) * 2 - 1)
        obs = result.obs
        h = torch.tanh(x @ core.params[0].transpose(1, 2))
        p = torch.softmax(h @ core.params[1].transpose(1, 2), -1)
        a, r = core.rl_state["prev_action"], core.rl_state["prev_reward"]
        dz = torch.nn.functional.one_hot(a, 3).float() - p
        eligibility = dz.transpose(1, 2) @ h / 5
        update = (dz * (r - baseline[:, None])[..., None]).transpose(1, 2) @ h / 5
        torch.testing.assert_close(_feature(core, obs, "output_eligibility"), eligibility, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(_feature(core, obs, "reinforce_update"), update, rtol=1e-4, atol=1e-6)
        col = core.config.observations.index("output_eligibility")
        assert not core.ownership.from_agents(obs[..., col])[0].any()  # hidden synapses: zero
        assert _feature(core, obs, "inner_reward")[:, 0, 0].tolist() == pytest.approx(r.mean(1).tolist())


def test_gradient_feature_is_the_reinforce_surrogate_gradient():
    # The REINFORCE surrogate's backprop gradient of the output layer is minus reinforce_update.
    core = _core("bandit", observations=("gradient", "reinforce_update"))
    obs = core.reset()
    obs = core.step(torch.zeros(2, core.ownership.num_agents, core.ownership.max_fan)).obs
    torch.testing.assert_close(_feature(core, obs, "gradient"), -_feature(core, obs, "reinforce_update"),
                               rtol=1e-4, atol=1e-7)
    hidden = core.ownership.from_agents(obs[..., 0])[0]
    assert hidden.abs().sum() > 0  # backprop reaches the hidden layer (the gradient baseline's privilege)


def test_reward_prediction_error_follows_the_running_baseline_and_resets_with_the_network():
    core = _core("bandit", copies=2)
    obs = core.reset()
    rate, baseline = core.task.baseline_rate, torch.zeros(2)
    rpe_col = core.config.observations.index("reward_prediction_error")
    for step in range(6):
        reward = core.rl_state["prev_reward"].mean(1)
        assert obs[:, 0, 0, rpe_col].tolist() == pytest.approx((reward - baseline).tolist(), abs=1e-6)
        baseline = baseline + rate * (reward - baseline)
        torch.testing.assert_close(core.baseline, baseline)
        if step < 5:
            obs = core.step(torch.rand(2, core.ownership.num_agents, core.ownership.max_fan) * 2 - 1).obs
    assert core.baseline.abs().sum() > 0
    obs = core.reset(torch.tensor([True, False]))
    assert float(obs[0, 0, 0, rpe_col]) == pytest.approx(float(core.rl_state["prev_reward"][0].mean()))
    assert float(core.baseline[0]) == pytest.approx(rate * float(core.rl_state["prev_reward"][0].mean()))
    assert float(core.baseline[1]) == pytest.approx(float(baseline[1]))


def test_loss_is_minus_mean_reward_and_rel_loss_uses_the_reward_scale():
    core = _core("maze", copies=2, batch_size=8)
    core.reset()
    col = core.config.observations.index("rel_loss")
    for _ in range(6):
        result = core.step(torch.zeros(2, core.ownership.num_agents, core.ownership.max_fan))
        torch.testing.assert_close(result.loss, -core.rl_state["prev_reward"].mean(1))
        torch.testing.assert_close(result.rewards[:, 0], -result.loss)  # global_loss pays the mean reward
        torch.testing.assert_close(result.obs[:, 0, 0, col], result.loss / 10.0)


def test_expected_regret_pays_minus_the_policys_expected_regret():
    # 4096 inner copies of each bandit: the sampled pulls' mean regret estimates the policy's
    # expected regret, which the scheme pays exactly (to 0.03, five standard errors)
    core = NetworkWeightsCore(EnvConfig(**small("bandit", reward="expected_regret", batch_size=4096)), copies=2)
    core.seed([3, 4])
    core.reset()
    probs = core.rl_state["arm_probs"]  # [2, 3]
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        result = core.step(torch.rand(2, core.ownership.num_agents, core.ownership.max_fan, generator=gen) - 0.5)
        pulled = probs.gather(1, core.rl_state["prev_action"])  # [2, B]
        sampled_regret = (probs.amax(1, keepdim=True) - pulled).mean(1)
        assert torch.all(result.rewards == result.rewards[:, :1])  # every agent is paid the same
        torch.testing.assert_close(result.rewards[:, 0], -sampled_regret, atol=0.03, rtol=0)
        assert bool((result.rewards <= 0).all())
        torch.testing.assert_close(result.loss, -core.rl_state["prev_reward"].mean(1))  # the loss is unchanged


def test_vector_env_state_round_trip_continues_identically():
    kwargs = small("maze", max_cycles=5)
    a, b = VectorNetworkEnv(EnvConfig(**kwargs), copies=2), VectorNetworkEnv(EnvConfig(**kwargs), copies=2)
    a.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    acts = [torch.rand(a.num_rows, a.max_fan, generator=gen) * 2 - 1 for _ in range(8)]
    for x in acts[:3]:
        a.step(x)
    b.load_state_dict(a.state_dict())
    for x in acts[3:]:
        oa, ra = a.step(x)[:2]
        ob, rb = b.step(x)[:2]
        assert torch.equal(oa, ob) and torch.equal(ra, rb)
    supervised = VectorNetworkEnv(EnvConfig(layers=(14, 6, 4)), copies=2)
    with pytest.raises(ValueError, match="other kind"):
        supervised.load_state_dict(a.state_dict())


def test_rl_settings_are_refused_where_they_do_not_apply():
    with pytest.raises(ValueError, match="only for RL tasks"):
        EnvConfig(observations=("weight", "inner_reward"))
    with pytest.raises(ValueError, match="only for RL tasks"):
        EnvConfig(observations=("weight", "ema0.9[output_eligibility]"))
    with pytest.raises(ValueError, match="np_update"):
        EnvConfig(**small("bandit", observations=("weight", "ema0.5[np_update]")))
    with pytest.raises(ValueError, match="counterfactual"):
        EnvConfig(**small("bandit", reward="difference"))
    with pytest.raises(ValueError, match="expected reward.*pick global_loss"):
        EnvConfig(**small("harlow", reward="expected_regret"))
    with pytest.raises(ValueError, match="expected reward"):
        EnvConfig(reward="expected_regret")
    with pytest.raises(ValueError, match="np_eligibility"):
        EnvConfig(**small("bandit", observations=("np_eligibility", "np_error")))
    assert set(RL_FEATURES) <= set(RL_OBS)
    EnvConfig(**preset("maze_large"))  # every preset builds


@pytest.mark.parametrize("ownership", ["outgoing", "incoming"])
def test_rl_observation_rows_written_natively_equal_torchs(monkeypatch, ownership):
    from marl_net.observations import FEATURES

    from marl_net.accumulators import signals_of

    names = tuple(n for n in FEATURES if not signals_of([n])[0].startswith(("np_", "wp_")))  # all an RL task accepts
    tables = []
    for fused in ("1", "0"):  # the C++ row writer, then torch's per-feature writes
        monkeypatch.setenv("MARL_NET_FUSED", fused)
        core = _core("harlow", copies=2, ownership=ownership, observations=names)
        tables.append([core.reset().clone()])
        for step in range(3):
            tables[-1].append(core.step(torch.rand(2, *core.ownership.mask.shape, generator=torch.Generator()
                                                   .manual_seed(step)) * 2 - 1).obs)
    for native, torch_written in zip(*tables):
        assert torch.equal(native, torch_written) and torch.isfinite(native).all()


def test_bernoulli_hidden_units_act_with_their_eligibility_observed():
    kwargs = small("harlow", "incoming", hidden_activation="bernoulli",
                   observations=("weight", "bernoulli_eligibility", "reinforce_update", "inner_reward"))
    env = network_weights_v0.parallel_env(**kwargs)
    obs, _ = env.reset(seed=0)
    hidden = env.possible_agents[0]  # incoming ownership: the first agent is a hidden unit
    assert np.abs(obs[hidden].reshape(env.core.ownership.max_fan, -1)[:, 1]).sum() > 0
    while env.agents:
        obs, rewards, *_ = env.step({a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents})
        assert all(np.isfinite(o).all() for o in obs.values())


def test_rllib_adapter_runs_an_rl_task_episode():
    from marl_net.rllib.env import NetworkWeightsRLlibEnv

    env = NetworkWeightsRLlibEnv(small("maze", max_cycles=3))
    obs, infos = env.reset(seed=0)
    first = next(iter(infos.values()))["loss"]  # the reset's inner step: minus its mean reward
    zero = {a: np.zeros(env.get_action_space(a).shape, np.float32) for a in env.agents}
    for t in range(1, 4):
        obs, rewards, terms, truncs, infos = env.step(zero)
        assert truncs["__all__"] is (t == 3)
        loss = next(iter(infos.values()))["loss"]
        assert all(r == pytest.approx(-loss) for r in rewards.values())  # global_loss pays the mean reward
    assert env.episode_summary["initial_loss"] == pytest.approx(first)
    assert env.episode_summary["final_loss"] == pytest.approx(loss)


def test_fast_ppo_trains_on_an_rl_task():
    from marl_net.fast.ppo import FastPPO, FastPPOConfig

    config = EnvConfig(**small("bandit", max_cycles=9, batch_size=2))
    trainer = FastPPO(config, {"hidden": 16}, FastPPOConfig(copies=2, rollout_steps=10, num_epochs=1), seed=0)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    metrics = trainer.train()
    # global_loss pays the step's mean reward (in [0, 1]) for 9 steps: a return in [0, 9]
    assert 0.0 < metrics["episode_return_mean"] <= 9.0
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert any(not torch.equal(p, b) for p, b in zip(trainer.policy.parameters(), before))
