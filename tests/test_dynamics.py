"""The dynamics checked by hand on a tiny network: losses, forward pass, ownership, every reward
scheme, divergence."""

import math

import numpy as np
import pytest
import torch

from marl_net import losses
from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.envs import network_weights_v0
from marl_net.network import NetworkSpec, forward

W0 = np.array([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]])  # [3, 2]: layer 0 -> 1
W1 = np.array([[0.7, -0.2, 0.4], [-0.5, 0.3, 0.9]])  # [2, 3]: layer 1 -> 2


def test_mse_and_cross_entropy_match_cai_cheng_by_hand():
    out = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]])
    target = torch.zeros(1, 2, 2)
    # 1/(N R_L) * 1/2 * ||X - Y||^2 = 1/(2*2) * 1/2 * (1 + 4 + 0 + 1)
    assert float(losses.mse(out, target)) == pytest.approx(6 / 8)
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(4.0), 0.0]]])
    labels = torch.tensor([[1, 1]])
    expected = -(math.log(3 / 4) + math.log(1 / 5)) / 2
    assert float(losses.cross_entropy(logits, labels)) == pytest.approx(expected)


def test_forward_is_cai_cheng_eq_1():
    spec = NetworkSpec((2, 3, 2), hidden_activation="tanh")
    x = torch.tensor([[[1.0, -2.0]]])
    out = forward(spec, [torch.tensor(W0[None]).float(), torch.tensor(W1[None]).float()], x).output
    expected = np.tanh(np.array([1.0, -2.0]) @ W0.T) @ W1.T
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-6)


def np_loss(w0, w1, x, y):
    out = np.tanh(x @ w0.T) @ w1.T
    return 0.5 * ((out - y) ** 2).sum() / (x.shape[0] * y.shape[1])


def tiny_core(reward, ownership="outgoing", local_ratio=None):
    cfg = EnvConfig(task="teacher_student", layers=(2, 3, 2), ownership=ownership, reward=reward,
                    local_ratio=local_ratio, batch_size=4, action_scale=0.1, max_cycles=10)
    core = NetworkWeightsCore(cfg, copies=1)
    core.seed([7])
    core.reset()
    core.params = [torch.tensor(W0[None]).float(), torch.tensor(W1[None]).float()]
    core.step(torch.zeros(1, 5, 3))  # a zero step: the loss of the planted weights becomes the held loss
    return core


def step_by_hand(core, actions):
    """Step ``core`` with ``actions`` and return (rewards, deltas, batch, previous loss) in numpy."""
    result = core.step(torch.tensor(actions[None]).float())
    x, y = (t[0].double().numpy() for t in core.last_batch)
    deltas = [d[0].double().numpy() for d in core.delta]
    return result, deltas, x, y


ACTIONS_OUT = np.array([[1.0, -0.5, 0.2], [0.3, 0.3, -1.0], [0.5, -0.2, 0.0], [-0.4, 0.1, 0.0],
                        [0.9, 0.6, 0.0]])  # 5 agents (2 inputs, 3 hidden), max fan 3
ACTIONS_IN = np.array([[1.0, -0.5, 0.0], [0.3, 0.3, 0.0], [0.5, -0.2, 0.0], [-0.4, 0.1, 0.7],
                       [0.9, 0.6, -0.3]])  # 5 agents (3 hidden, 2 outputs), max fan 3


def test_outgoing_ownership_moves_columns_and_incoming_moves_rows():
    core = tiny_core("global_loss")
    _, (d0, d1), _, _ = step_by_hand(core, ACTIONS_OUT)
    np.testing.assert_allclose(d0, 0.1 * ACTIONS_OUT[:2, :3].T, rtol=1e-6)  # input i -> column i of W0
    np.testing.assert_allclose(d1, 0.1 * ACTIONS_OUT[2:, :2].T, rtol=1e-6)  # hidden j -> column j of W1
    core = tiny_core("global_loss", "incoming")
    _, (d0, d1), _, _ = step_by_hand(core, ACTIONS_IN)
    np.testing.assert_allclose(d0, 0.1 * ACTIONS_IN[:3, :2], rtol=1e-6)  # hidden j -> row j of W0
    np.testing.assert_allclose(d1, 0.1 * ACTIONS_IN[3:, :3], rtol=1e-6)  # output k -> row k of W1


def test_global_loss_and_loss_improvement_by_hand():
    core = tiny_core("loss_improvement")
    x0, y0 = (t[0].double().numpy() for t in core.last_batch)
    prev = np_loss(W0, W1, x0, y0)
    assert float(core.loss[0]) == pytest.approx(prev, rel=1e-5)
    result, (d0, d1), x, y = step_by_hand(core, ACTIONS_OUT)
    new = np_loss(W0 + d0, W1 + d1, x, y)
    assert float(result.loss[0]) == pytest.approx(new, rel=1e-5)
    np.testing.assert_allclose(result.rewards[0].numpy(), [prev - new] * 5, rtol=1e-4, atol=1e-7)
    glob = tiny_core("global_loss")
    result, _, _, _ = step_by_hand(glob, ACTIONS_OUT)
    np.testing.assert_allclose(result.rewards[0].numpy(), [-new] * 5, rtol=1e-5)  # same seed, same batch


def test_weight_max_reward_is_v_dot_dv_by_hand():
    core = tiny_core("weight_max", "incoming")
    result, (d0, d1), x, y = step_by_hand(core, ACTIONS_IN)
    hidden = [W1[:, j] @ d1[:, j] for j in range(3)]  # v = outgoing weights before the step
    out = -np_loss(W0 + d0, W1 + d1, x, y)
    np.testing.assert_allclose(result.rewards[0].numpy(), hidden + [out, out], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ownership,actions", [("outgoing", ACTIONS_OUT), ("incoming", ACTIONS_IN)])
def test_difference_reward_by_hand(ownership, actions):
    core = tiny_core("difference", ownership)
    result, (d0, d1), x, y = step_by_hand(core, actions)
    full = np_loss(W0 + d0, W1 + d1, x, y)
    expected = []
    for agent in range(5):  # remove one agent's change at a time
        m0, m1 = np.ones_like(d0), np.ones_like(d1)
        if ownership == "outgoing":
            (m0[:, agent] if agent < 2 else m1[:, agent - 2])[:] = 0
        else:
            (m0[agent] if agent < 3 else m1[agent - 3])[:] = 0
        expected.append(np_loss(W0 + d0 * m0, W1 + d1 * m1, x, y) - full)
    np.testing.assert_allclose(result.rewards[0].numpy(), expected, rtol=1e-4, atol=1e-7)


def test_local_ratio_mixes_scheme_and_global_signal():
    a = tiny_core("difference")
    b = tiny_core("difference", local_ratio=0.25)
    ra, _, x, y = step_by_hand(a, ACTIONS_OUT)
    rb, _, _, _ = step_by_hand(b, ACTIONS_OUT)
    expected = 0.25 * ra.rewards + 0.75 * (-ra.loss[:, None])
    torch.testing.assert_close(rb.rewards, expected)


def test_divergence_ends_the_episode_with_the_penalty_and_finite_observations():
    env = network_weights_v0.parallel_env(layers=(4, 5, 3), action_scale=1e5, divergence_penalty=7.0, max_cycles=50)
    env.reset(seed=0)
    acts = {a: np.ones(env.action_space(a).shape, np.float32) for a in env.agents}
    obs, rewards, term, trunc, infos = env.step(acts)
    assert all(term.values()) and not any(trunc.values())
    assert set(rewards.values()) == {-7.0}
    assert all(np.isfinite(o).all() for o in obs.values())
    assert env.agents == [] and next(iter(infos.values()))["diverged"]


def test_nan_weights_never_reach_observations():
    core = NetworkWeightsCore(EnvConfig(layers=(4, 5, 3)), copies=2)
    core.seed([0, 1])
    core.reset()
    core.params[0][0, 0, 0] = float("nan")  # copy 0 is corrupted from outside
    result = core.step(torch.zeros(2, 9, 5))
    assert result.terminated.tolist() == [True, False]
    assert torch.isfinite(result.obs).all() and torch.isfinite(result.rewards).all()


@pytest.mark.parametrize("ownership,bias", [("outgoing", False), ("incoming", True), ("incoming", False)])
def test_observation_rows_written_natively_equal_torchs(monkeypatch, ownership, bias):
    from marl_net.observations import FEATURES
    from marl_net.accumulators import signals_of
    from marl_net.rl_features import RL_FEATURES  # RL tasks only (tests/test_rl_env.py checks them natively)

    cfg = EnvConfig(layers=(4, 6, 3), ownership=ownership, bias=bias, batch_size=7,
                    observations=tuple(n for n in FEATURES if n != "gradient" and signals_of([n])[0] not in RL_FEATURES)
                    + ("gradient",))
    tables = []
    for fused in ("1", "0"):  # the C++ row writer, then torch's per-feature writes
        monkeypatch.setenv("MARL_NET_FUSED", fused)
        core = NetworkWeightsCore(cfg, copies=3)
        core.seed([0, 1, 2])
        tables.append([core.reset().clone()])
        core.params[0][1, 0, 0] = float("nan")  # a NaN reaches the features of copy 1
        for step in range(3):
            tables[-1].append(core.step(torch.rand(3, *core.ownership.mask.shape, generator=torch.Generator()
                                                   .manual_seed(step)) * 2 - 1).obs)
    for native, torch_written in zip(*tables):
        assert torch.equal(native, torch_written) and torch.isfinite(native).all()


def test_observation_rows_refuse_columns_of_the_wrong_shape():
    from marl_net.observation_rows import write_block

    dst = torch.empty(2, 3, 4, 3)
    write_block(dst, [torch.ones(2, 3, 2), torch.arange(3.0).view(1, 3, 1).expand(2, 3, 2)], fan=2)
    assert dst[1, 2, :2].tolist() == [[1.0, 2.0, 1.0]] * 2 and not dst[:, :, 2:].any()
    with pytest.raises(ValueError, match="columns of shape"):
        write_block(dst, [torch.ones(2, 3, 2), torch.ones(2, 1, 2)], fan=2)


def test_user_defined_scheme_is_usable_by_name():
    from marl_net.rewards import REWARDS, register_reward

    @register_reward("test_sparse_improvement", "1 when the loss fell this step, else 0")
    def sparse_improvement(ctx):
        improved = (ctx.loss < ctx.prev_loss).float()
        return improved[:, None].expand(-1, ctx.ownership.num_agents)

    try:
        env = network_weights_v0.parallel_env(layers=(4, 5, 3), reward="test_sparse_improvement")
        env.reset(seed=0)
        _, rewards, _, _, infos = env.step({a: np.zeros(5, np.float32) for a in env.agents})
        assert set(rewards.values()) <= {0.0, 1.0}
        with pytest.raises(ValueError, match="already registered"):
            register_reward("test_sparse_improvement", "again")(sparse_improvement)
    finally:
        del REWARDS["test_sparse_improvement"]


def test_local_observation_features_by_hand():
    feats = ("weight", "prev_delta", "pre_activity", "post_activity", "pre_post_corr", "rel_loss")
    cfg = EnvConfig(task="teacher_student", layers=(2, 3, 2), batch_size=5, action_scale=0.1, observations=feats)
    core = NetworkWeightsCore(cfg, copies=1)
    core.seed([3])
    core.reset()
    core.params = [torch.tensor(W0[None]).float(), torch.tensor(W1[None]).float()]
    result = core.step(torch.tensor(ACTIONS_OUT[None]).float())
    x = core.last_batch[0][0].double().numpy()
    w0 = W0 + 0.1 * ACTIONS_OUT[:2, :3].T
    h = np.tanh(x @ w0.T)  # hidden activity [B, 3]
    obs = result.obs[0].double().numpy()  # [agents, K, F + 1]; agent 1 = input neuron 1, outgoing to 3 hidden
    table = obs[1]
    np.testing.assert_allclose(table[:, 0], w0[:, 1], rtol=1e-5)  # its outgoing weights
    np.testing.assert_allclose(table[:, 1], ACTIONS_OUT[1, :3], rtol=1e-5)  # last change / action_scale
    np.testing.assert_allclose(table[:, 2], x[:, 1].mean(), rtol=1e-5)  # presynaptic: the input itself
    np.testing.assert_allclose(table[:, 3], h.mean(0), rtol=1e-5, atol=1e-7)  # postsynaptic: each hidden unit
    corr = [np.corrcoef(x[:, 1], h[:, j])[0, 1] for j in range(3)]
    np.testing.assert_allclose(table[:, 4], corr, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(table[:, 5], float(result.loss[0] / core.initial_loss[0]), rtol=1e-6)
    np.testing.assert_array_equal(table[:, 6], 1.0)  # mask: 3 real synapses
    hidden = obs[4]  # hidden neuron 2: 2 outgoing synapses, one padded slot
    np.testing.assert_array_equal(hidden[:, -1], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(hidden[2], 0.0)


def test_percent_reward_unit_divides_by_the_initial_loss():
    a = tiny_core("difference")
    b = tiny_core("difference")
    b.config = b.config.replace(reward_unit="percent")
    ra, _, _, _ = step_by_hand(a, ACTIONS_OUT)
    rb, _, _, _ = step_by_hand(b, ACTIONS_OUT)
    torch.testing.assert_close(rb.rewards, 100 * ra.rewards / a.initial_loss[:, None])
    with pytest.raises(ValueError, match="reward_unit='pct' is unknown"):
        EnvConfig(reward_unit="pct")


@pytest.mark.parametrize("ownership,bias", [("outgoing", False), ("incoming", True)])
def test_weight_space_and_agent_space_round_trip(ownership, bias):
    from marl_net.ownership import Ownership

    own = Ownership(NetworkSpec((3, 5, 2), bias=bias), ownership)
    per_layer = [torch.randn(2, *own.weight_space_shape(l)) for l in range(2)]
    agents = own.to_agents(per_layer)
    assert agents.shape == (2, own.num_agents, own.max_fan)
    assert (agents[:, ~own.mask] == 0).all()  # padding stays zero
    for a, b in zip(own.from_agents(agents), per_layer):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
