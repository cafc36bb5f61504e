"""Hand-designed rules: exact updates, unbiasedness, and in-env policy == standalone trainer.

Run: ``.venv/bin/pytest -q tests/test_cai_rules.py`` (about 20 s).
"""

from __future__ import annotations

import math

import pytest
import torch

from marl_net import losses, seeding
from marl_net.config import EnvConfig
from marl_net.context import StepContext
from marl_net.envs import network_weights_v0
from marl_net.network import NetworkSpec, forward, split_bias
from marl_net.ownership import Ownership
from marl_net.policies.hand_rules import env_kwargs, exact_action_scale, make_policy, run_episode
from marl_net.rules import node_perturbation as np_rule
from marl_net.rules import weight_perturbation as wp_rule
from marl_net.rules.common import coefficient, perturbation_update
from marl_net.rules.registry import make_rule, run_rule
from marl_net.rules.trainer import train
from marl_net.rules.tuning import tune_lr
from marl_net.rules.weight_max_env import bernoulli_eligibility, output_gradient

# ---------------------------------------------------------------- a 2-3-2 network written out by hand
W0 = [[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]]  # [3, 2]
W1 = [[0.7, -0.4, 0.3], [-0.2, 0.5, 0.9]]  # [2, 3]
X = [[1.0, -0.5], [0.3, 0.8]]  # B = 2 samples
Y = [[0.2, -0.1], [-0.3, 0.4]]
XI0 = [[0.01, -0.02, 0.005], [-0.015, 0.03, 0.01]]  # node noise of the hidden layer [B, 3]
XI1 = [[0.02, -0.01], [0.005, 0.015]]  # node noise of the output layer [B, 2]
EPS0 = [[0.01, -0.02], [0.03, 0.005], [-0.01, 0.02]]  # weight noise [3, 2]
EPS1 = [[-0.02, 0.01, 0.015], [0.005, -0.01, 0.02]]  # [2, 3]
SPEC = NetworkSpec((2, 3, 2), hidden_activation="tanh")


def hand_forward(w0, w1, node0=None, node1=None):
    """Loops, floats, no torch: hidden h = tanh(W0 x + xi0), output o = W1 h + xi1."""
    hs, outs = [], []
    for b, x in enumerate(X):
        h = [math.tanh(sum(w0[j][i] * x[i] for i in range(2)) + (node0[b][j] if node0 else 0.0)) for j in range(3)]
        o = [sum(w1[k][j] * h[j] for j in range(3)) + (node1[b][k] if node1 else 0.0) for k in range(2)]
        hs.append(h)
        outs.append(o)
    return hs, outs


def hand_mse(outs):
    """E = 1/(N R) * 1/2 * sum (o - y)^2 with N = 2 samples, R = 2 outputs."""
    return sum((outs[b][k] - Y[b][k]) ** 2 for b in range(2) for k in range(2)) / (2 * 2) / 2


def tensors():
    t = lambda v: torch.tensor([v], dtype=torch.float32)  # noqa: E731  (one copy)
    return [t(W0), t(W1)], t(X), t(Y)


def make_ctx(spec, params, x, y, loss_name="mse", seed=0):
    weights, biases = split_bias(spec, params)
    gens = seeding.make_generators([seed] * x.shape[0])
    fwd = forward(spec, weights, x, biases, generators=gens)
    loss = losses.compute(loss_name, fwd.output, y)
    e = x.shape[0]
    return StepContext(spec=spec, ownership=Ownership(spec, "incoming" if spec.bias else "outgoing"),
                       loss_name=loss_name, params=params, delta=[torch.zeros_like(p) for p in params], inputs=x,
                       targets=y, fwd=fwd, loss=loss, prev_loss=loss, initial_loss=loss,
                       t=torch.zeros(e, dtype=torch.long), max_cycles=10, action_scale=1.0, noise_generators=gens)


def test_sgd_update_equals_hand_backprop():
    params, x, y = tensors()
    hs, outs = hand_forward(W0, W1)
    # dE/do_bk = (o - y) / (N R); dE/dW1_kj = sum_b dE/do_bk h_bj; dE/dW0_ji = sum_b sum_k dE/do_bk W1_kj (1 - h^2) x_bi
    do = [[(outs[b][k] - Y[b][k]) / 4 for k in range(2)] for b in range(2)]
    g1 = [[sum(do[b][k] * hs[b][j] for b in range(2)) for j in range(3)] for k in range(2)]
    g0 = [[sum(sum(do[b][k] * W1[k][j] for k in range(2)) * (1 - hs[b][j] ** 2) * X[b][i] for b in range(2))
           for i in range(2)] for j in range(3)]
    lr = 0.7
    rule = make_rule("sgd", lr=lr)
    rule.start(EnvConfig(layers=(2, 3, 2)), 1)
    upd = rule.update(make_ctx(SPEC, params, x, y))
    torch.testing.assert_close(upd[0][0], -lr * torch.tensor(g0), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(upd[1][0], -lr * torch.tensor(g1), rtol=1e-5, atol=1e-7)


def test_node_perturbation_update_equals_hand_formula():
    params, x, y = tensors()
    hs, outs = hand_forward(W0, W1)
    _, outs_n = hand_forward(W0, W1, XI0, XI1)
    err = hand_mse(outs) - hand_mse(outs_n)  # E - E_N
    lr, sigma = 0.05, 2.5e-4
    # dW0_ji = eta/sigma (E - E_N) sum_b xi0_bj x_bi ;  dW1_kj = eta/sigma (E - E_N) sum_b xi1_bk h_bj (clean h)
    d0 = [[lr / sigma * err * sum(XI0[b][j] * X[b][i] for b in range(2)) for i in range(2)] for j in range(3)]
    d1 = [[lr / sigma * err * sum(XI1[b][k] * hs[b][j] for b in range(2)) for j in range(3)] for k in range(2)]
    ctx = make_ctx(SPEC, params, x, y)
    noise = [torch.tensor([XI0]), torch.tensor([XI1])]
    sig = np_rule.node_perturbation(SPEC, params, x, y, "mse", ctx.fwd.activity, ctx.loss, noise)
    assert sig.error.item() == pytest.approx(err, rel=1e-4)
    coef = coefficient(torch.tensor([lr]), sigma)
    upd = [perturbation_update(sig.error, e, coef) for e in sig.eligibility]
    torch.testing.assert_close(upd[0][0], torch.tensor(d0), rtol=2e-4, atol=1e-8)
    torch.testing.assert_close(upd[1][0], torch.tensor(d1), rtol=2e-4, atol=1e-8)


def test_weight_perturbation_update_equals_hand_formula():
    params, x, y = tensors()
    _, outs = hand_forward(W0, W1)
    w0p = [[W0[j][i] + EPS0[j][i] for i in range(2)] for j in range(3)]
    w1p = [[W1[k][j] + EPS1[k][j] for j in range(3)] for k in range(2)]
    _, outs_w = hand_forward(w0p, w1p)
    err = hand_mse(outs) - hand_mse(outs_w)  # E - E_W
    lr, sigma = 0.05, 2.5e-4
    ctx = make_ctx(SPEC, params, x, y)
    noise = [torch.tensor([EPS0]), torch.tensor([EPS1])]
    sig = wp_rule.weight_perturbation(SPEC, params, x, y, "mse", ctx.loss, noise)
    assert sig.error.item() == pytest.approx(err, rel=1e-4)
    coef = coefficient(torch.tensor([lr]), sigma)
    for eps, e in zip((EPS0, EPS1), sig.eligibility):  # dW = eta/sigma (E - E_W) Xi
        torch.testing.assert_close(perturbation_update(sig.error, e, coef)[0],
                                   lr / sigma * err * torch.tensor(eps), rtol=2e-4, atol=1e-8)


def test_rules_draw_their_noise_from_the_copy_noise_stream_with_variance_sigma():
    params, x, y = tensors()
    sigma = 4e-4
    ctx = make_ctx(SPEC, params, x, y, seed=11)  # tanh units: the clean pass drew nothing
    sig = np_rule.signal(ctx, sigma)
    ref = seeding.make_generators([11])
    xi0 = seeding.randn(ref, (2, 3)) * sigma**0.5  # layer by layer, std sqrt(sigma)
    xi1 = seeding.randn(ref, (2, 2)) * sigma**0.5
    torch.testing.assert_close(sig.eligibility[0], xi0.transpose(1, 2) @ x)
    torch.testing.assert_close(sig.eligibility[1], xi1.transpose(1, 2) @ ctx.fwd.activity[1])
    assert np_rule.signal(ctx, sigma) is sig  # cached: every feature of the step sees one perturbation
    ctx = make_ctx(SPEC, params, x, y, seed=11)
    sig = wp_rule.signal(ctx, sigma)
    ref = seeding.make_generators([11])
    torch.testing.assert_close(sig.eligibility[0], seeding.randn(ref, (3, 2)) * sigma**0.5)
    torch.testing.assert_close(sig.eligibility[1], seeding.randn(ref, (2, 3)) * sigma**0.5)


def test_weight_max_signals_equal_hand_formulas():
    spec = NetworkSpec((2, 3, 2), hidden_activation="bernoulli")
    params, x, _ = tensors()
    labels = torch.tensor([[1, 0]])
    ctx = make_ctx(spec, params, x, labels, loss_name="cross_entropy", seed=5)
    h = ctx.fwd.activity[1][0]  # the sampled hidden units
    p = torch.sigmoid(torch.tensor(X) @ torch.tensor(W0).T)
    elig = [[sum((h[b, j].item() - p[b, j].item()) * X[b][i] for b in range(2)) / 2 for i in range(2)] for j in range(3)]
    torch.testing.assert_close(bernoulli_eligibility(ctx, 0)[0], torch.tensor(elig))
    assert torch.equal(bernoulli_eligibility(ctx, 1), torch.zeros(1, 2, 3))
    logits = h @ torch.tensor(W1).T
    probs = torch.softmax(logits, -1)
    onehot = torch.nn.functional.one_hot(labels[0], 2).float()
    grad = [[sum((probs[b, k] - onehot[b, k]).item() * h[b, j].item() for b in range(2)) / 2 for j in range(3)]
            for k in range(2)]  # dCE/dW1 = 1/N sum_b (p - y) h^T
    torch.testing.assert_close(output_gradient(ctx, 1)[0], torch.tensor(grad))
    assert torch.equal(output_gradient(ctx, 0), torch.zeros(1, 3, 2))


# ---------------------------------------------------------------- unbiasedness: <dW_NP> = <dW_WP> = dW_SGD
@pytest.mark.parametrize("rule", ["np", "wp"])
def test_perturbation_update_is_sgd_in_expectation(rule):
    n, spec, b = 20000, NetworkSpec((4, 5, 3), hidden_activation="tanh"), 6
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(1, 5, 4, generator=g) * 0.5, torch.randn(1, 3, 5, generator=g) * 0.5]
    x, y = torch.randn(1, b, 4, generator=g), torch.randn(1, b, 3, generator=g)
    sgd = make_rule("sgd", lr=0.1)
    sgd.start(EnvConfig(layers=(4, 5, 3)), 1)
    ref = torch.cat([u.flatten() for u in sgd.update(make_ctx(spec, params, x, y))])
    sigma = 1e-6  # variance: small enough for the first-order expansion
    many = [p.expand(n, -1, -1) for p in params]
    xs, ys = x.expand(n, -1, -1), y.expand(n, -1, -1)
    ctx = make_ctx(spec, many, xs, ys)
    ctx.noise_generators = seeding.make_generators(range(n))
    module = np_rule if rule == "np" else wp_rule
    sig = module.signal(ctx, sigma)
    coef = coefficient(torch.full((n,), 0.1), sigma)
    mean = torch.cat([perturbation_update(sig.error, e, coef).mean(0).flatten() for e in sig.eligibility])
    cosine = torch.nn.functional.cosine_similarity(mean, ref, dim=0).item()
    ratio = (mean.norm() / ref.norm()).item()
    assert cosine > 0.9, f"{rule}: cosine(<dW>, dW_SGD) = {cosine:.3f}"
    assert 0.8 < ratio < 1.25, f"{rule}: |<dW>| / |dW_SGD| = {ratio:.3f}; eta/sigma with sigma the variance is unbiased"


# ---------------------------------------------------------------- in-env policy == standalone trainer
CASES = {
    "sgd": ({"lr": 0.5}, {}),
    "np": ({"lr": 0.03}, {}),
    "wp": ({"lr": 0.03, "sigma": 4e-4}, {}),
    "weight_max": ({"lr": 0.5, "hidden_lr": 2.0}, {"layers": (8, 6, 5, 4), "bias": True}),
    "np_digits": ({"lr": 3e-4}, {"task": "digits", "layers": (10, 24, 10), "task_kwargs": {"pca": 10}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_policy_in_env_ends_with_the_trainers_weights(case):
    name = case.split("_digits")[0]
    hyper, extra = CASES[case]
    steps, seed = 25, 7
    kwargs = env_kwargs(name, sigma=hyper.get("sigma", np_rule.DEFAULT_SIGMA), action_scale=0.25,
                        max_cycles=steps, **extra)
    env = network_weights_v0.parallel_env(**kwargs)
    policy = make_policy(name, env.config, **hyper)
    env_losses = run_episode(env, policy, seed=seed)
    run = train(make_rule(name, **hyper), env.config, [seed, seed + 1], steps=steps)  # batched: copy 0 is seed 7
    for env_p, trainer_p in zip(env.core.params, run.params):
        assert torch.equal(env_p, trainer_p[:1]), f"{case}: in-env weights differ from the trainer's"
    assert torch.equal(torch.tensor(env_losses, dtype=torch.float32), run.curves[0])
    assert env_losses[-1] < env_losses[0]
    assert not torch.equal(run.params[0][0], run.params[0][1])  # the second copy is its own run


@pytest.mark.parametrize("name", ["np", "weight_max"])
def test_policy_on_the_batched_core_equals_the_batched_trainer(name):
    from marl_net.core import NetworkWeightsCore
    from marl_net.policies.hand_rules import run_on_core

    hyper, extra = CASES[name]
    config = EnvConfig.from_kwargs(**env_kwargs(name, action_scale=0.25, max_cycles=15, **extra))
    seeds = [2, 9, 4]
    core = NetworkWeightsCore(config, copies=3)
    losses = run_on_core(core, make_policy(name, config, **hyper), seeds)
    run = train(make_rule(name, **hyper), config, seeds)
    for core_p, trainer_p in zip(core.params, run.params):
        torch.testing.assert_close(core_p, trainer_p, rtol=0, atol=1e-6)
    torch.testing.assert_close(losses, run.curves, rtol=0, atol=1e-6)


@pytest.mark.parametrize("table_steps", [256, 3])  # the default, and a table shorter than an episode
def test_a_core_stepped_past_max_cycles_keeps_the_trainers_minibatches(monkeypatch, table_steps):
    """The core draws an episode's minibatch indices at reset (max_cycles + 1 rows per copy, at most
    BATCH_TABLE_STEPS) and per step beyond them; the trainer draws them per step: the same numbers
    either way."""
    from marl_net import core as core_module
    from marl_net.core import NetworkWeightsCore
    from marl_net.policies.hand_rules import run_on_core

    monkeypatch.setattr(core_module, "BATCH_TABLE_STEPS", table_steps)
    hyper, extra = CASES["np"]
    config = EnvConfig.from_kwargs(**env_kwargs("np", action_scale=0.25, max_cycles=4, **extra))
    seeds, steps = [2, 9], 9
    core = NetworkWeightsCore(config, copies=2)
    losses = run_on_core(core, make_policy("np", config, **hyper), seeds, steps=steps)
    run = train(make_rule("np", **hyper), config, seeds, steps=steps)
    torch.testing.assert_close(losses, run.curves, rtol=0, atol=1e-6)
    for core_p, trainer_p in zip(core.params, run.params):
        torch.testing.assert_close(core_p, trainer_p, rtol=0, atol=1e-6)


def test_trainer_copies_equal_single_copy_runs():
    config = EnvConfig(task="teacher_student", max_cycles=10)
    both = run_rule("wp", config, [3, 4])
    alone = run_rule("wp", config, [4])
    for a, b in zip(both.params, alone.params):
        torch.testing.assert_close(a[1:], b, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- bad input and the tuner
def test_bad_settings_raise_with_the_fix():
    with pytest.raises(ValueError, match="observation features"):
        make_policy("np", EnvConfig())
    with pytest.raises(ValueError, match="ownership='incoming'"):
        make_rule("weight_max").start(EnvConfig(), 1)
    with pytest.raises(ValueError, match="deterministic units"):
        make_rule("np").start(EnvConfig(hidden_activation="bernoulli"), 1)
    with pytest.raises(ValueError, match="local_ratio=None"):
        make_policy("weight_max", EnvConfig.from_kwargs(**env_kwargs("weight_max", local_ratio=0.5)))
    with pytest.raises(ValueError, match="variance"):
        make_rule("np", sigma=0.0)
    with pytest.raises(ValueError, match="unknown"):
        make_rule("adamw")
    with pytest.raises(ValueError, match="takes"):
        make_rule("sgd", sigma=1e-3)
    env = network_weights_v0.parallel_env(**env_kwargs("sgd", action_scale=1e-6))
    policy = make_policy("sgd", env.config, lr=10.0)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="raise action_scale"):
        policy.act_dict(obs)
    assert exact_action_scale(0.3) == 0.5


def test_tuner_prefers_a_working_step_size_and_rejects_divergence():
    config = EnvConfig(task="teacher_student", split="heldout")
    result = tune_lr("sgd", config, seeds=[0, 1], steps=60, grid=[1e-3, 1.0, 1e4])
    assert result.best_lr == 1.0
    assert result.scores[2] == math.inf and result.diverged[2] > 0
    assert result.scores[1] < result.scores[0]
    assert result.curves.shape == (3, 2, 61)
    with pytest.raises(ValueError, match="step sizes"):
        tune_lr("np", config, seeds=[0], steps=5, param="sigma")


@pytest.mark.parametrize("rule", ["np", "wp"])
def test_update_feature_is_eligibility_times_error(rule):
    """``np_update`` / ``wp_update``: the product of the rule's two features, from the same draw."""
    from marl_net.core import NetworkWeightsCore
    from marl_net.perturbation_features import PERTURBATION_FEATURES

    names = PERTURBATION_FEATURES[rule]
    core = NetworkWeightsCore(EnvConfig(task="teacher_student", layers=(4, 6, 2), observations=names), copies=3)
    core.seed([0, 1, 2])
    obs = core.reset()
    obs = core.step(torch.rand(obs.shape[:3]) * 2 - 1).obs
    eligibility, error, update, mask = obs.unbind(-1)
    assert update.abs().max() > 0 and torch.all(update[mask == 0] == 0)
    torch.testing.assert_close(update, eligibility * error)


def test_tuner_extends_its_grid_past_an_end_that_tunes_best():
    """A grid whose best value is an end is extended, spaced like the grid, until the best value
    is inside (at most ``extend`` values per end), and its scores are those of one grid of every
    value tried (the same seeds for every value: common random numbers)."""
    from marl_net.rules.tuning import TuneResult, extend_to_interior

    asked = []

    def bowl(values):  # a score whose minimum lies at 100, far above the grid
        asked.append(list(values))
        scores = [(math.log(v, 3) - math.log(100, 3)) ** 2 for v in values]
        return TuneResult("r", "lr", "final", list(values), scores, [0] * len(values), torch.zeros(len(values), 1, 2))

    result = extend_to_interior(bowl, [9.0, 1.0, 3.0])
    assert asked[0] == [1.0, 3.0, 9.0]  # the grid, ascending
    assert result.grid == pytest.approx([1, 3, 9, 27, 81, 243]) and result.best == pytest.approx(81)
    assert not result.at_edge
    short = extend_to_interior(bowl, [1.0, 3.0, 9.0], extend=1)
    assert short.best == pytest.approx(27) and short.at_edge  # stopped at the limit: flagged
    assert not extend_to_interior(bowl, [1.0, 3.0, 9.0], extend=0).grid[-1] > 9
    low = extend_to_interior(bowl, [1e4, 1e5])  # the minimum below the grid: extended down by 10x
    assert low.grid == pytest.approx([10, 100, 1e3, 1e4, 1e5]) and low.best == pytest.approx(100)
    single = extend_to_interior(bowl, [1.0])  # one value: both ends, spaced by 3, 3 values at most above it
    assert single.grid == pytest.approx([1 / 3, 1, 3, 9, 27]) and single.best == pytest.approx(27) and single.at_edge
    with pytest.raises(ValueError, match="positive"):
        extend_to_interior(bowl, [0.0, 1.0])

    config = EnvConfig(task="teacher_student", split="heldout")
    too_small = tune_lr("sgd", config, seeds=[0, 1], steps=30, grid=[1e-3, 3e-3])
    assert too_small.best > 3e-3 and len(too_small.grid) > 2  # SGD's best step lies far above the grid
    whole = tune_lr("sgd", config, seeds=[0, 1], steps=30, grid=too_small.grid, extend=0)
    assert whole.scores == too_small.scores and whole.best == too_small.best
    torch.testing.assert_close(whole.curves, too_small.curves, rtol=0, atol=0)
