"""Feedback alignment (FA, DFA): exact updates, feedback matrices as env state, in-env policy == trainer,
the PettingZoo API with the features enabled, and bad input.

Run: ``.venv/bin/python -m pytest -q tests/test_feedback.py``.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

from marl_net import losses, seeding
from marl_net.config import EnvConfig
from marl_net.context import StepContext
from marl_net.core import NetworkWeightsCore
from marl_net.envs import network_weights_v0
from marl_net.feedback_alignment import FEEDBACK_FEATURES, Feedback, check_computable, draw_feedback, signals
from marl_net.network import NetworkSpec, forward, split_bias
from marl_net.ownership import Ownership
from marl_net.policies.hand_rules import env_kwargs, make_policy, run_episode, run_on_core
from marl_net.rules.registry import make_rule, run_rule
from marl_net.rules.trainer import train
from marl_net.rules.weight_max_env import output_gradient

# ---------------------------------------------------------------- a 2-3-2-2 network written out by hand
W0 = [[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]]  # [3, 2]
W1 = [[0.7, -0.4, 0.3], [-0.2, 0.5, 0.9]]  # [2, 3]
W2 = [[0.4, -0.8], [0.6, 0.3]]  # [2, 2]
X = [[1.0, -0.5], [0.3, 0.8]]  # B = 2 samples
Y = [[0.2, -0.1], [-0.3, 0.4]]
B_DFA = [[[0.3, -0.2], [0.1, 0.5], [-0.4, 0.2]], [[0.6, -0.1], [0.2, 0.3]]]  # hidden 1 [3, 2], hidden 2 [2, 2]
B_FA = [[[0.3, -0.2], [0.1, 0.5], [-0.4, 0.2]], [[0.6, -0.1], [0.2, 0.3]]]  # B_1 [3, 2] (W1^T), B_2 [2, 2] (W2^T)
SPEC = NetworkSpec((2, 3, 2, 2), hidden_activation="tanh")


def hand_update(mode: str, b_mats, lr: float):
    """FA / DFA by loops over floats: h1 = tanh(W0 x), h2 = tanh(W1 h1), o = W2 h2; MSE with N = R = 2,
    e_b = (o_b - y_b) / R; hidden errors through B; dW = -lr * 1/N sum_b delta_b f'(z_b) x_b^T."""
    n = len(X)
    h1s, h2s, es = [], [], []
    for x, y in zip(X, Y):
        h1 = [math.tanh(sum(W0[j][i] * x[i] for i in range(2))) for j in range(3)]
        h2 = [math.tanh(sum(W1[k][j] * h1[j] for j in range(3))) for k in range(2)]
        o = [sum(W2[m][k] * h2[k] for k in range(2)) for m in range(2)]
        h1s.append(h1), h2s.append(h2), es.append([(o[m] - y[m]) / 2 for m in range(2)])
    d2s, d1s = [], []
    for b in range(n):
        delta2 = [sum(b_mats[1][k][m] * es[b][m] for m in range(2)) for k in range(2)]
        d2 = [delta2[k] * (1 - h2s[b][k] ** 2) for k in range(2)]
        src = es[b] if mode == "dfa" else d2  # DFA: the output error; FA: the layer above's
        delta1 = [sum(b_mats[0][j][m] * src[m] for m in range(2)) for j in range(3)]
        d1s.append([delta1[j] * (1 - h1s[b][j] ** 2) for j in range(3)])
        d2s.append(d2)
    g2 = [[sum(es[b][m] * h2s[b][k] for b in range(n)) / n for k in range(2)] for m in range(2)]
    g1 = [[sum(d2s[b][k] * h1s[b][j] for b in range(n)) / n for j in range(3)] for k in range(2)]
    g0 = [[sum(d1s[b][j] * X[b][i] for b in range(n)) / n for i in range(2)] for j in range(3)]
    return [torch.tensor([g], dtype=torch.float32) * -lr for g in (g0, g1, g2)]


def make_ctx(spec, params, x, y, loss_name="mse", feedback=None):
    weights, biases = split_bias(spec, params)
    fwd = forward(spec, weights, x, biases)
    loss = losses.compute(loss_name, fwd.output, y)
    e = x.shape[0]
    return StepContext(spec=spec, ownership=Ownership(spec, "incoming" if spec.bias else "outgoing"), loss_name=loss_name, params=params,
                       delta=[torch.zeros_like(p) for p in params], inputs=x, targets=y, fwd=fwd, loss=loss,
                       prev_loss=loss, initial_loss=loss, t=torch.zeros(e, dtype=torch.long), max_cycles=10,
                       action_scale=1.0, noise_generators=seeding.make_generators([0] * e), feedback=feedback)


def random_ctx(spec, feedback_mode=None, loss_name="mse", copies=3, seed=0):
    gens = seeding.make_generators([seed + i for i in range(copies)])
    torch.manual_seed(seed)
    params = [torch.randn(copies, n_out, n_in + spec.bias) * 0.7
              for n_in, n_out in zip(spec.layers[:-1], spec.layers[1:])]
    x = torch.randn(copies, 5, spec.layers[0])
    y = torch.randn(copies, 5, spec.layers[-1]) if loss_name == "mse" else torch.randint(spec.layers[-1], (copies, 5))
    fb = None if feedback_mode is None else draw_feedback(spec, feedback_mode, gens)
    return make_ctx(spec, params, x, y, loss_name, fb)


@pytest.mark.parametrize("mode", ["fa", "dfa"])
def test_fa_and_dfa_updates_equal_hand_computed_ones(mode):
    t = lambda v: torch.tensor([v], dtype=torch.float32)  # noqa: E731  (one copy)
    b_mats = B_FA if mode == "fa" else B_DFA
    ctx = make_ctx(SPEC, [t(W0), t(W1), t(W2)], t(X), t(Y), feedback=Feedback(mode, [t(b) for b in b_mats]))
    rule = make_rule(mode, lr=0.5)
    rule.start(EnvConfig(layers=SPEC.layers), 1)
    for got, want in zip(rule.update(ctx), hand_update(mode, b_mats, 0.5)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # the teaching signal and the output units' feedback error: the minibatch mean of (o - y) / R
    o = ctx.fwd.output
    torch.testing.assert_close(signals(ctx).teaching, ((o - ctx.targets) / 2).mean(1))


def test_fa_and_dfa_differ_with_two_hidden_layers_and_agree_with_one():
    two = [signals(random_ctx(SPEC, m, seed=3)).eligibility[0] for m in ("fa", "dfa")]
    assert not torch.allclose(*two)
    one = NetworkSpec((4, 5, 3))
    a, b = (signals(random_ctx(one, m, seed=3)).eligibility for m in ("fa", "dfa"))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_output_layer_equals_sgd_and_the_delta_rule_exactly(bias, loss_name):
    spec = NetworkSpec((4, 6, 5, 3), bias=bias)
    ctx = random_ctx(spec, "dfa", loss_name)
    dfa = make_rule("dfa", lr=0.3)
    sgd = make_rule("sgd", lr=0.3)
    dfa.start(EnvConfig(layers=spec.layers), 3), sgd.start(EnvConfig(layers=spec.layers), 3)
    assert torch.equal(dfa.update(ctx)[-1], sgd.update(ctx)[-1])
    assert torch.equal(signals(ctx).eligibility[-1], output_gradient(ctx, spec.num_layers - 1))
    if loss_name == "cross_entropy":  # teaching signal: softmax(o) - onehot(y), minibatch mean
        onehot = torch.nn.functional.one_hot(ctx.targets, 3).float()
        torch.testing.assert_close(signals(ctx).teaching, (torch.softmax(ctx.fwd.output, -1) - onehot).mean(1))


@pytest.mark.parametrize("bias", [False, True])
def test_fa_with_transposed_forward_weights_is_backprop_exactly(bias):
    spec = NetworkSpec((4, 6, 5, 3), hidden_activation="tanh", bias=bias)
    ctx = random_ctx(spec)
    weights, _ = split_bias(spec, ctx.params)
    ctx.feedback = Feedback("fa", [w.transpose(-1, -2) for w in weights[1:]])  # B_k = W_k^T
    fa, sgd = make_rule("fa", lr=0.7), make_rule("sgd", lr=0.7)
    fa.start(EnvConfig(layers=spec.layers), 3), sgd.start(EnvConfig(layers=spec.layers), 3)
    for a, b in zip(fa.update(ctx), sgd.update(ctx)):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- in the env: matrices as state, policy == trainer
LAYERS = (5, 6, 4, 3)


@pytest.mark.parametrize("ownership", ["outgoing", "incoming"])
@pytest.mark.parametrize("name", ["fa", "dfa"])
def test_policy_in_env_ends_with_the_trainers_weights(name, ownership):
    steps, seed = 12, 5
    kwargs = env_kwargs(name, action_scale=1.0, max_cycles=steps, layers=LAYERS, ownership=ownership,
                        bias=ownership == "incoming")
    env = network_weights_v0.parallel_env(**kwargs)
    env_losses = run_episode(env, make_policy(name, env.config, lr=1.0), seed=seed)
    run = train(make_rule(name, lr=1.0), env.config, [seed, seed + 1], steps=steps)  # copy 0 is seed 5
    for env_p, trainer_p in zip(env.core.params, run.params):
        assert torch.equal(env_p, trainer_p[:1]), f"{name}/{ownership}: in-env weights differ from the trainer's"
    assert torch.equal(torch.tensor(env_losses, dtype=torch.float32), run.curves[0])
    assert env_losses[-1] < 0.5 * env_losses[0]


def test_policy_on_the_batched_core_equals_the_batched_trainer():
    config = EnvConfig.from_kwargs(**env_kwargs("fa", action_scale=1.0, max_cycles=8, layers=LAYERS))
    seeds = [2, 9, 4]
    core = NetworkWeightsCore(config, copies=3)
    curves = run_on_core(core, make_policy("fa", config, lr=1.0), seeds)
    run = train(make_rule("fa", lr=1.0), config, seeds)
    for core_p, trainer_p in zip(core.params, run.params):
        torch.testing.assert_close(core_p, trainer_p, rtol=0, atol=1e-6)
    torch.testing.assert_close(curves, run.curves, rtol=0, atol=1e-6)


def test_feedback_matrices_fixed_within_an_episode_fresh_at_reset_and_per_copy():
    config = EnvConfig(layers=LAYERS, observations=("weight", "feedback_error"), feedback="fa", max_cycles=5)
    core = NetworkWeightsCore(config, copies=2)
    core.seed([11, 12])
    core.reset()
    first = [b.clone() for b in core.feedback.matrices]
    assert [tuple(b.shape) for b in first] == [(2, 6, 4), (2, 4, 3)]  # FA: B_k has W_k^T's shape
    for _ in range(3):
        core.step(torch.rand(2, core.ownership.num_agents, core.ownership.max_fan) * 2 - 1)
        assert all(torch.equal(a, b) for a, b in zip(first, core.feedback.matrices))
    core.reset(torch.tensor([False, True]))  # only copy 1 draws
    assert all(torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1]) for a, b in zip(first, core.feedback.matrices))
    second = [b.clone() for b in core.feedback.matrices]
    core.reset()
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(second, core.feedback.matrices))
    # a batched run seeded [s0, s1] equals two single-copy runs, matrices and observations
    both = NetworkWeightsCore(config, copies=2)
    both.seed([11, 12])
    obs = both.reset()
    for i, s in enumerate((11, 12)):
        alone = NetworkWeightsCore(config, copies=1)
        alone.seed([s])
        assert torch.equal(alone.reset()[0], obs[i])
        assert all(torch.equal(a[0], b[i]) for a, b in zip(alone.feedback.matrices, both.feedback.matrices))
    # drawn from the copy's noise generator at reset, entries N(0, 1/fan)
    gens = seeding.make_generators([seeding.seed_from(11, 1)])
    expected = draw_feedback(config.network_spec(), "fa", gens)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(expected.matrices, both.feedback.matrices))


def test_no_feedback_feature_draws_nothing():
    """With no feedback feature enabled the noise stream is untouched (existing seeded results stay)."""
    for observations, drawn in ((("weight",), False), (("weight", "teaching_signal"), True)):
        core = NetworkWeightsCore(EnvConfig(layers=LAYERS, observations=observations), copies=1)
        core.seed([3])
        core.reset()
        fresh = seeding.make_generators([seeding.seed_from(3, 1)])[0]
        assert torch.equal(core.noise_gens[0].get_state(), fresh.get_state()) is not drawn
        assert (core.feedback is not None) is drawn


def test_fast_env_checkpoint_keeps_the_feedback_matrices():
    from marl_net.fast.vector_env import VectorNetworkEnv

    config = EnvConfig(layers=LAYERS, observations=FEEDBACK_FEATURES, max_cycles=6)
    env = VectorNetworkEnv(config, copies=2)
    env.reset(seed=4)
    actions = torch.rand(env.num_rows, env.max_fan) * 2 - 1
    env.step(actions)
    state = env.state_dict()
    want = env.step(actions)[0]
    restored = VectorNetworkEnv(config, copies=2)
    restored.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(restored.core.feedback.matrices, env.core.feedback.matrices))
    assert torch.equal(restored.step(actions)[0], want)


def test_observations_stay_finite_when_the_network_blows_up():
    config = EnvConfig(layers=LAYERS, observations=FEEDBACK_FEATURES, action_scale=1e3, divergence_threshold=1e30,
                       hidden_activation="relu")
    core = NetworkWeightsCore(config, copies=2)
    core.seed([0, 1])
    core.reset()
    for _ in range(3):
        result = core.step(torch.ones(2, core.ownership.num_agents, core.ownership.max_fan))
        assert torch.isfinite(result.obs).all()


# ---------------------------------------------------------------- PettingZoo API, bad input
@pytest.mark.parametrize("ownership", ["outgoing", "incoming"])
@pytest.mark.parametrize("feedback", ["fa", "dfa"])
def test_pettingzoo_api_tests_pass_with_feedback_features(ownership, feedback):
    kwargs = dict(layers=(5, 6, 4, 3), ownership=ownership, bias=ownership == "incoming", max_cycles=6, batch_size=8,
                  feedback=feedback, observations=("weight",) + FEEDBACK_FEATURES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(network_weights_v0.parallel_env(**kwargs), num_cycles=10)
        api_test(parallel_to_aec(network_weights_v0.parallel_env(**kwargs)), num_cycles=10)


def test_bad_input_raises_with_the_choices_named():
    with pytest.raises(ValueError, match=r"feedback='bp' is unknown; choose one of \['dfa', 'fa'\]"):
        EnvConfig(feedback="bp")
    with pytest.raises(ValueError, match=r"activation derivative.*\['linear', 'relu', 'sigmoid', 'tanh'\]"):
        EnvConfig(hidden_activation="bernoulli", observations=("feedback_eligibility",))
    with pytest.raises(ValueError, match="activation derivative"):
        make_rule("dfa").start(EnvConfig(hidden_activation="bernoulli"), 1)
    with pytest.raises(ValueError, match=r"has none: use a task with one of the losses \['cross_entropy', 'mse', 'reinforce'\]"):
        check_computable(SPEC, "negative_reward")  # a loss without a teaching signal (e.g. an RL task's)
    with pytest.raises(ValueError, match="feedback='fa'"):
        make_policy("fa", EnvConfig.from_kwargs(**env_kwargs("dfa")))
    with pytest.raises(ValueError, match="observation features"):
        make_policy("dfa", EnvConfig())
    with pytest.raises(ValueError, match="feedback"):
        EnvConfig.from_kwargs(feedbak="fa")
