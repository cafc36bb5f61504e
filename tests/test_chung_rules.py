"""Hand-computed updates of Chung's rules on a 2-3-2 network (2 inputs, 3 hidden units, 2 free
output logits = 3 actions with the last logit fixed at 0), fixed weights and fixed random draws.

Expected numbers are worked out from the paper's formulas with scalar ``math`` below, never with
the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from marl_net.network import NetworkSpec
from marl_net.reproduce.optim import Adam, pack
from marl_net.rewards import weight_max_gain
from marl_net.rules.reinforce import CoagentActor, Reinforce, Traces, local_log_prob_grads, split
from marl_net.rules.ste import STE, Backprop
from marl_net.rules.weight_max import WeightMax, WeightMaxTraces


pytestmark = pytest.mark.usefixtures("one_torch_thread")

X = [1.0, -1.0]
W1 = [[0.5, -0.2], [0.1, 0.3], [-0.4, 0.6]]
B1 = [0.1, 0.0, -0.1]
W2 = [[0.2, -0.5, 0.3], [0.4, 0.1, -0.6]]
B2 = [0.05, -0.05]
U_HIDDEN = [0.3, 0.9, 0.2]
U_ACTION = 0.5


def sig(z):
    return 1 / (1 + math.exp(-z))


def matvec(w, v, b):
    return [sum(wi * vi for wi, vi in zip(row, v)) + bi for row, bi in zip(w, b)]


def softmax_zero(z):
    e = [math.exp(v) for v in z] + [1.0]
    return [v / sum(e) for v in e]


def make_actor(hidden="bernoulli", explore_prob=None, w1=W1, w2=W2):
    spec = NetworkSpec((2, 3, 2), hidden_activation=hidden)
    params = [torch.tensor([w1], dtype=torch.float64), torch.tensor([B1], dtype=torch.float64),
              torch.tensor([w2], dtype=torch.float64), torch.tensor([B2], dtype=torch.float64)]
    return CoagentActor(spec, params, explore_prob=explore_prob)


def act(actor, x=X, u_hidden=U_HIDDEN, u_action=U_ACTION, u_explore=None):
    u = list(u_hidden) if actor.spec.hidden_activation == "bernoulli" else []
    u += list(u_explore or []) + [u_action]
    return actor.act(torch.tensor([x], dtype=torch.float64), torch.tensor([u], dtype=torch.float64))


def forward_by_hand(x=X, u_hidden=U_HIDDEN, u_action=U_ACTION, w1=W1, w2=W2, b2=B2):
    z1 = matvec(w1, x, B1)  # [0.8, -0.2, -1.1]
    m1 = [sig(z) for z in z1]
    h = [1.0 if u < m else 0.0 for u, m in zip(u_hidden, m1)]
    z2 = matvec(w2, h, b2)
    p = softmax_zero(z2)
    action = sum(1 for c in (p[0], p[0] + p[1]) if c <= u_action)
    onehot = [1.0 if action == k else 0.0 for k in range(2)]
    return dict(z1=z1, m1=m1, h=h, z2=z2, p=p, action=action, onehot=onehot)


def outer(a, b):
    return [[ai * bj for bj in b] for ai in a]


def assert_update(update, expected, actor=None):
    """``update``: a rule's flat ``[1, P]`` update; ``expected``: [uW1, ub1, uW2, ub2] as nested lists."""
    updates = split(update, (actor or make_actor()).params)
    for got, want in zip(updates, expected):
        torch.testing.assert_close(got[0], torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-12)


G = torch.tensor([2.0], dtype=torch.float64)
START = torch.tensor([True])


def test_forward_samples_as_by_hand():
    f = forward_by_hand()
    assert f["h"] == [1.0, 0.0, 1.0]  # sigmoid(0.8)=0.690>0.3, sigmoid(-0.2)=0.450<0.9, sigmoid(-1.1)=0.250>0.2
    assert f["action"] == 1  # p = [0.4935, 0.2217, 0.2847]; cumulative 0.4935 <= 0.5 < 0.7153
    step = act(make_actor())
    assert step.outputs[0][0].tolist() == f["h"]
    assert int(step.action) == 1
    torch.testing.assert_close(step.means[1][0], torch.tensor(f["p"][:2], dtype=torch.float64))


def reinforce_by_hand(g=2.0):
    f = forward_by_hand()
    d1 = [h - m for h, m in zip(f["h"], f["m1"])]
    d2 = [o - p for o, p in zip(f["onehot"], f["p"][:2])]
    return f, d1, d2, [[[g * v for v in row] for row in outer(d1, X)], [g * v for v in d1],
                       [[g * v for v in row] for row in outer(d2, f["h"])], [g * v for v in d2]]


def test_reinforce_update_by_hand():
    """Eq. 3: every unit, hidden or output, gets G * (h - mean) * input."""
    actor = make_actor()
    _, _, _, expected = reinforce_by_hand()
    assert_update(Reinforce().update(actor, act(actor), G, START), expected)


def test_weight_max_update_by_hand():
    """Eq. 4, 7-8: output by REINFORCE on G; hidden unit i by G_i = v_i . dv_i (raw change)."""
    actor = make_actor()
    f, d1, d2, rf = reinforce_by_hand()
    u_w2 = rf[2]
    g_hidden = [sum(W2[o][i] * u_w2[o][i] for o in range(2)) for i in range(3)]
    expected = [[[g_hidden[i] * d1[i] * xj for xj in X] for i in range(3)], [g_hidden[i] * d1[i] for i in range(3)],
                u_w2, rf[3]]
    assert_update(WeightMax().update(actor, act(actor), G, START), expected)
    # the middle hidden unit did not fire (h = 0): its outgoing weights do not move, reward 0
    assert g_hidden[1] == 0.0


def test_weight_max_decay_and_norm():
    """Weight decay c adds -2cW to every raw weight change, and the hidden reward sees it."""
    c = 0.01
    actor = make_actor()
    f, d1, d2, rf = reinforce_by_hand()
    u_w2 = [[rf[2][o][i] - 2 * c * W2[o][i] for i in range(3)] for o in range(2)]
    g_hidden = [sum(W2[o][i] * u_w2[o][i] for o in range(2)) for i in range(3)]
    expected = [[[g_hidden[i] * d1[i] * X[j] - 2 * c * W1[i][j] for j in range(2)] for i in range(3)],
                [g_hidden[i] * d1[i] for i in range(3)], u_w2, rf[3]]
    assert_update(WeightMax(weight_decay=c).update(actor, act(actor), G, START), expected)


def test_hidden_reward_is_v_dot_dv():
    v = torch.tensor([[[0.2, -0.5, 0.3], [0.4, 0.1, -0.6]]], dtype=torch.float64)
    dv = torch.tensor([[[0.01, 0.02, -0.03], [-0.04, 0.05, 0.06]]], dtype=torch.float64)
    # unit 0: 0.2*0.01 + 0.4*(-0.04) = -0.014; unit 1: -0.5*0.02 + 0.1*0.05 = -0.005;
    # unit 2: 0.3*(-0.03) + (-0.6)*0.06 = -0.045
    torch.testing.assert_close(weight_max_gain(v, dv, 2.0), torch.tensor([[-0.014, -0.005, -0.045]], dtype=torch.float64))
    # p = 3: sum |v|^2 sign(v) dv; unit 2: 0.09*(-0.03) + 0.36*(-1)*0.06 = -0.0243
    assert weight_max_gain(v, dv, 3.0)[0, 2].item() == pytest.approx(-0.0243)
    # first order in the norm change: (||v + e dv||_p^p - ||v||_p^p) / (p e)
    for p in (2.0, 3.0):
        eps = 1e-6
        change = ((v + eps * dv).abs().pow(p).sum(1) - v.abs().pow(p).sum(1)) / (p * eps)
        torch.testing.assert_close(weight_max_gain(v, dv, p), change, rtol=1e-4, atol=1e-8)


def test_ste_update_by_hand():
    """STE: backprop through the sample with dh/dz = sigmoid'(z)."""
    actor = make_actor()
    f, _, d2, rf = reinforce_by_hand()
    dh = [sum(W2[o][i] * d2[o] for o in range(2)) for i in range(3)]
    dz1 = [dh[i] * f["m1"][i] * (1 - f["m1"][i]) for i in range(3)]
    expected = [[[2.0 * dz1[i] * xj for xj in X] for i in range(3)], [2.0 * d for d in dz1], rf[2], rf[3]]
    assert_update(STE().update(actor, act(actor), G, START), expected)


def test_backprop_relu_update_by_hand():
    actor = make_actor(hidden="relu")
    z1 = matvec(W1, X, B1)  # [0.8, -0.2, -1.1]
    h = [max(z, 0.0) for z in z1]  # [0.8, 0, 0]
    p = softmax_zero(matvec(W2, h, B2))
    action = sum(1 for c in (p[0], p[0] + p[1]) if c <= U_ACTION)
    d2 = [(1.0 if action == k else 0.0) - p[k] for k in range(2)]
    dz1 = [sum(W2[o][i] * d2[o] for o in range(2)) * (1.0 if z1[i] > 0 else 0.0) for i in range(3)]
    expected = [[[2 * dz1[i] * xj for xj in X] for i in range(3)], [2 * d for d in dz1],
                [[2 * d2[o] * h[i] for i in range(3)] for o in range(2)], [2 * d for d in d2]]
    step = act(actor)
    assert int(step.action) == action
    assert_update(Backprop().update(actor, step, G, START), expected)


def test_thomas_exploration_masks_units():
    """Non-exploring units emit their most likely value and get no eligibility."""
    actor = make_actor(explore_prob=0.5)
    step = act(actor, u_explore=[0.1, 0.7, 0.9])  # unit 0 explores, units 1 and 2 do not
    f = forward_by_hand()
    assert step.outputs[0][0].tolist() == [1.0, 0.0, 0.0]  # unit 2: sigmoid(-1.1) < 0.5 -> 0
    g = local_log_prob_grads(step)
    torch.testing.assert_close(g[1][0], torch.tensor([1 - f["m1"][0], 0.0, 0.0], dtype=torch.float64))


def test_traces_accumulate_and_reset():
    tr = Traces(decay=0.5)
    g = torch.ones(2, 3)
    tr.accumulate(g, torch.tensor([True, True]))
    z = tr.accumulate(g, torch.tensor([False, True]))
    torch.testing.assert_close(z, torch.tensor([[1.5] * 3, [1.0] * 3]))


def test_weight_max_traces_two_steps_by_hand():
    """Eq. 13-17 on the 2-3-2 net (M = 2 layers) for two steps, with SGD (alpha) between them.

    Output layer (s = 0): z_t = (1-lam) sum_k (lam gamma)^k g_{t-k}, u_t = delta_t z_t.
    Hidden layer (s = 1): lambda^l(0) = 0, so its trace holds g from one step back; it is paid
    v . dv, the change its outgoing weights made one step earlier (v before that change).
    """
    gamma, lam, alpha = 0.9, 0.8, 0.1
    actor = make_actor()
    rule = WeightMaxTraces(gamma=gamma, lam=lam)
    x2, uh2, ua2 = [-0.5, 2.0], [0.6, 0.1, 0.7], 0.9
    delta0, delta1 = 2.0, -1.0

    # step 0
    f0 = forward_by_hand()
    d1_0 = [h - m for h, m in zip(f0["h"], f0["m1"])]
    d2_0 = [o - p for o, p in zip(f0["onehot"], f0["p"][:2])]
    z_out0 = [[(1 - lam) * v for v in row] for row in outer(d2_0, f0["h"])]
    zb_out0 = [(1 - lam) * v for v in d2_0]
    u_w2_0 = [[delta0 * v for v in row] for row in z_out0]
    expected0 = [[[0.0, 0.0]] * 3, [0.0] * 3, u_w2_0, [delta0 * v for v in zb_out0]]
    u0 = rule.update(actor, act(actor), torch.tensor([delta0], dtype=torch.float64), torch.tensor([True]))
    assert_update(u0, expected0)
    with torch.no_grad():
        for p, u in zip(actor.params, split(u0, actor.params)):
            p.add_(alpha * u)
    w2_1 = [[W2[o][i] + alpha * u_w2_0[o][i] for i in range(3)] for o in range(2)]
    b2_1 = [B2[o] + alpha * delta0 * zb_out0[o] for o in range(2)]

    # step 1 (same episode): new input and draws, weights after step 0's change
    f1 = forward_by_hand(x=x2, u_hidden=uh2, u_action=ua2, w2=w2_1, b2=b2_1)
    d2_1 = [o - p for o, p in zip(f1["onehot"], f1["p"][:2])]
    z_out1 = [[lam * gamma * z_out0[o][i] + (1 - lam) * d2_1[o] * f1["h"][i] for i in range(3)] for o in range(2)]
    zb_out1 = [lam * gamma * zb_out0[o] + (1 - lam) * d2_1[o] for o in range(2)]
    g_hidden = [sum(W2[o][i] * u_w2_0[o][i] for o in range(2)) for i in range(3)]  # v before the change
    z_hid = [[(1 - lam) * d1_0[i] * X[j] for j in range(2)] for i in range(3)]  # g of step 0, (1-lam) lam^0
    expected1 = [[[g_hidden[i] * z_hid[i][j] for j in range(2)] for i in range(3)],
                 [g_hidden[i] * (1 - lam) * d1_0[i] for i in range(3)],
                 [[delta1 * v for v in row] for row in z_out1], [delta1 * v for v in zb_out1]]
    u1 = rule.update(actor, act(actor, x=x2, u_hidden=uh2, u_action=ua2), torch.tensor([delta1], dtype=torch.float64),
                     torch.tensor([False]))
    assert_update(u1, expected1)


def test_weight_max_traces_lambda0_is_delayed_weight_max():
    """With lambda = 0 the hidden layer gets exactly Weight Max's update, one step late."""
    actor = make_actor()
    wm = WeightMax().update(actor, act(actor), G, START)
    rule = WeightMaxTraces(gamma=0.9, lam=0.0)
    first = rule.update(actor, act(actor), G, START)
    second = rule.update(actor, act(actor, x=[0.3, 0.3]), torch.tensor([0.0], dtype=torch.float64),
                         torch.tensor([True]))
    first, second, wm = (split(u, actor.params) for u in (first, second, wm))
    torch.testing.assert_close(first[2], wm[2])
    torch.testing.assert_close(second[0], wm[0])
    torch.testing.assert_close(second[1], wm[1])


def test_adam_ascent_matches_torch_adam():
    torch.manual_seed(0)
    w = torch.randn(2, 3, 4)
    b = torch.randn(2, 3)
    flat, views = pack([w.clone(), b.clone()])
    adam = Adam(flat, [12, 3], [0.01, 0.002])
    ref_w, ref_b = w.clone().requires_grad_(), b.clone().requires_grad_()
    opt = torch.optim.Adam([{"params": [ref_w], "lr": 0.01}, {"params": [ref_b], "lr": 0.002}], eps=1e-8)
    for _ in range(3):
        uw, ub = torch.randn(2, 3, 4), torch.randn(2, 3)
        adam.step(torch.cat([uw.reshape(2, -1), ub], 1))
        ref_w.grad, ref_b.grad = -uw, -ub
        opt.step()
    torch.testing.assert_close(views[0], ref_w.detach())
    torch.testing.assert_close(views[1], ref_b.detach())


@pytest.mark.parametrize(
    "build",
    [
        lambda: WeightMax(p=0.5),
        lambda: WeightMax(weight_decay=-1.0),
        lambda: WeightMaxTraces(gamma=1.5, lam=0.8),
        lambda: Traces(decay=2.0),
        lambda: make_actor(hidden="tanh"),
        lambda: make_actor(explore_prob=0.0),
        lambda: make_actor(hidden="relu", explore_prob=0.5),
    ],
)
def test_bad_options_raise(build):
    with pytest.raises(ValueError):
        build()


def test_bad_inputs_raise():
    actor = make_actor()
    with pytest.raises(ValueError, match="pass"):
        actor.act(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="uniforms"):
        actor.act(torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64))
    step = act(actor)
    with pytest.raises(ValueError, match="NaN"):
        Reinforce().update(actor, step, torch.tensor([float("nan")], dtype=torch.float64), START)
    with pytest.raises(ValueError, match="one reward"):
        WeightMax().update(actor, step, torch.tensor([1.0, 2.0], dtype=torch.float64), START)
