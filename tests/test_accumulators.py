"""Accumulator features ``ema<decay>[<signal>]`` and ``rms<decay>[<signal>]``: the recurrences by hand,
resets, checkpoints, bad names.

Run: ``.venv/bin/pytest -q tests/test_accumulators.py`` (about 5 s). The PettingZoo env == batched
env check with accumulators on is in ``tests/test_fast_vector_env.py``.
"""

from __future__ import annotations

import pytest
import torch

from marl_net.accumulators import ema_feature_names
from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.fast.vector_env import VectorNetworkEnv
from marl_net.levels import Level
from marl_net.observations import FEATURES

DECAYS = (0.5, 0.9, 0.99)


def make_core(signal="gradient", copies=2, ownership="outgoing", **kwargs):
    names = ema_feature_names(signal, DECAYS)
    config = EnvConfig(layers=(3, 4, 2), ownership=ownership, bias=ownership == "incoming", batch_size=8,
                       max_cycles=20, observations=("weight", signal) + names, **kwargs)
    core = NetworkWeightsCore(config, copies=copies)
    core.seed(list(range(copies)))
    return core


def columns(obs):
    """Real synapse rows only: (signal column, [EMA columns]) of observations [E, A, K, F + 1]."""
    mask = obs[..., -1] > 0
    return obs[..., 1][mask], [obs[..., 2 + i][mask] for i in range(len(DECAYS))]


@pytest.mark.parametrize("signal,ownership", [("gradient", "outgoing"), ("np_update", "incoming"),
                                              ("feedback_eligibility", "outgoing")])
def test_ema_values_follow_the_recurrence_by_hand(signal, ownership):
    """a_t = d a_{t-1} + (1 - d) s_t from a_{-1} = 0, with s_t the signal's own observation column."""
    core = make_core(signal, ownership=ownership)
    gen = torch.Generator().manual_seed(0)
    obs = core.reset()
    expected = [torch.zeros_like(columns(obs)[0]) for _ in DECAYS]
    for t in range(6):
        s, emas = columns(obs)
        assert s.abs().max() > 0  # the signal is not trivially zero
        for i, d in enumerate(DECAYS):
            expected[i] = d * expected[i] + (1 - d) * s
            torch.testing.assert_close(emas[i], expected[i], rtol=0, atol=0)
        obs = core.step(torch.rand(core.copies, core.ownership.num_agents, core.ownership.max_fan,
                                   generator=gen) * 2 - 1).obs
    # after 6 updates the slow accumulator still remembers far more than the fast one forgets
    assert not torch.equal(columns(obs)[1][0], columns(obs)[1][2])


@pytest.mark.parametrize("signal,ownership", [("gradient", "outgoing"), ("feedback_eligibility", "incoming")])
def test_rms_values_follow_the_recurrence_by_hand(signal, ownership):
    """v_t = d v_{t-1} + (1 - d) s_t^2 from 0; shown: s_t / sqrt(v_t / (1 - d^(t+1))), scale-free."""
    names = tuple(f"rms{d!r}[{signal}]" for d in DECAYS)
    config = EnvConfig(layers=(3, 4, 2), ownership=ownership, bias=ownership == "incoming", batch_size=8,
                       max_cycles=20, observations=("weight", signal) + names)
    core = NetworkWeightsCore(config, copies=2)
    core.seed([0, 1])
    gen = torch.Generator().manual_seed(0)
    obs = core.reset()
    s0 = columns(obs)[0]
    for i in range(len(DECAYS)):  # at the reset: the signal's sign
        torch.testing.assert_close(columns(obs)[1][i], torch.sign(s0), rtol=1e-6, atol=1e-6)
    v = [torch.zeros_like(s0, dtype=torch.float64) for _ in DECAYS]
    for t in range(6):
        s, shown = columns(obs)
        for i, d in enumerate(DECAYS):
            v[i] = d * v[i] + (1 - d) * s.double() ** 2
            expected = s.double() / ((v[i] / (1 - d ** (t + 1))).sqrt() + 1e-12)
            torch.testing.assert_close(shown[i].double(), expected, rtol=1e-5, atol=1e-6)
            assert shown[i].abs().max() <= (1 - d) ** -0.5 + 1e-4
        obs = core.step(torch.rand(2, core.ownership.num_agents, core.ownership.max_fan,
                                   generator=gen) * 2 - 1).obs
    # not a constant: both signs show
    assert torch.unique(torch.sign(columns(obs)[1][2])).numel() > 1


def test_reset_zeroes_the_accumulators_full_and_partial():
    core = make_core()
    core.reset()
    actions = torch.full((2, core.ownership.num_agents, core.ownership.max_fan), 0.3)
    for _ in range(3):
        before = core.step(actions).obs
    # a partial reset of copy 0: its accumulators restart from zero, copy 1's go on untouched
    obs = core.reset(torch.tensor([True, False]))
    s, emas = columns(obs[:1])
    for i, d in enumerate(DECAYS):
        torch.testing.assert_close(emas[i], (1 - d) * s, rtol=0, atol=0)
        assert torch.equal(columns(obs[1:])[1][i], columns(before[1:])[1][i])
    # a full reset: every copy from zero
    obs = core.reset()
    s, emas = columns(obs)
    for i, d in enumerate(DECAYS):
        torch.testing.assert_close(emas[i], (1 - d) * s, rtol=0, atol=0)


def test_accumulators_are_saved_and_restored_with_the_fast_env_state():
    names = ema_feature_names("gradient", DECAYS)
    config = EnvConfig(layers=(3, 4, 2), max_cycles=3, observations=("gradient",) + names)
    gen = torch.Generator().manual_seed(5)
    a = VectorNetworkEnv(config, copies=2)
    a.reset(seed=1)
    actions = [torch.rand(a.num_rows, a.max_fan, generator=gen) * 2 - 1 for _ in range(7)]
    for act in actions[:2]:
        a.step(act)
    state = a.state_dict()
    assert sorted(state["accumulators"]) == sorted(names)
    b = VectorNetworkEnv(config, copies=2)
    b.load_state_dict(state)
    for act in actions[2:]:  # crosses an autoreset (max_cycles 3)
        assert torch.equal(a.step(act)[0], b.step(act)[0])
    other = VectorNetworkEnv(config.replace(observations=("gradient",) + names[:1]), copies=2)
    with pytest.raises(ValueError, match="same observations"):
        other.load_state_dict(state)


def test_privileged_iff_the_signal_is_and_nothing_without_them():
    grad, local = ema_feature_names("gradient", [0.9]) + ema_feature_names("np_update", [0.9])
    assert FEATURES[grad].privileged and not FEATURES[local].privileged
    level = Level("test", "an accumulator of a privileged and of a local signal",
                  ("ema0.5[gradient]", "ema0.5[np_eligibility]"), ())
    assert level.privileged == ["ema0.5[gradient]"]  # the rule ladder's check, through the registry's families
    core = NetworkWeightsCore(EnvConfig(layers=(3, 4, 2)), copies=1)
    core.seed([0])
    core.reset()
    assert core.accumulators == {} and core.accumulator_specs == []


@pytest.mark.parametrize("name,message", [
    ("ema0.9[nosuch]", "'nosuch' is not a per-synapse signal; average one of"),
    ("ema0.9[loss]", "'loss' is not a per-synapse signal"),
    ("ema0.9[ema0.5[gradient]]", "is not a per-synapse signal"),
    ("rms0.9[ema0.5[gradient]]", "is not a per-synapse signal"),
    ("rms1.5[gradient]", "strictly between 0 and 1"),
    ("ema1.0[gradient]", "decay 1.0 must lie strictly between 0 and 1"),
    ("ema0[gradient]", "strictly between 0 and 1"),
    ("emafast[gradient]", "decay 'fast' is not a number"),
    ("ema0.9(gradient)", "write an accumulator as ema<decay>\\[<signal>\\]"),
])
def test_bad_accumulator_names_name_the_choices(name, message):
    with pytest.raises(ValueError, match=message) as info:
        EnvConfig(observations=("weight", name))
    if "per-synapse" in message:
        assert "'gradient'" in str(info.value) and "'np_update'" in str(info.value)
    assert name not in FEATURES


def test_an_accumulated_gradient_is_refused_where_the_gradient_is():
    with pytest.raises(ValueError, match="an accumulator of it"):
        EnvConfig(ownership="incoming", hidden_activation="bernoulli", reward="weight_max",
                  observations=("weight", "ema0.9[gradient]"))


def test_an_accumulator_of_a_feedback_signal_alone_draws_the_feedback_matrices():
    """ema0.9[feedback_eligibility] without feedback_eligibility itself: the core still draws the
    episode's feedback matrices (it would fail to compute the signal otherwise), and the network
    checks of the feedback features apply to it."""
    config = EnvConfig(layers=(3, 4, 2), observations=("weight", "ema0.9[feedback_eligibility]"))
    core = NetworkWeightsCore(config, copies=1)
    core.seed([0])
    obs = core.reset()
    assert core.feedback is not None and obs[..., 1].abs().max() > 0
    assert not FEATURES["ema0.9[feedback_eligibility]"].privileged
    with pytest.raises(ValueError, match="feedback_eligibility"):
        EnvConfig(ownership="incoming", hidden_activation="bernoulli", reward="weight_max",
                  observations=("weight", "ema0.9[feedback_eligibility]"))
