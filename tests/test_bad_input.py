"""Bad input is refused with ValueError/KeyError naming the fix, and never corrupts state.

The same table also runs under ``python -O`` (where ``assert`` statements vanish) to prove no
validation hides in an assert.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from marl_net.config import EnvConfig
from marl_net.core import NetworkWeightsCore
from marl_net.envs import network_weights_v0

LAYERS = (4, 5, 3)


def fresh_env(**kw):
    env = network_weights_v0.parallel_env(layers=LAYERS, max_cycles=3, **kw)
    env.reset(seed=0)
    return env


def good_actions(env, value=0.1):
    return {a: np.full(env.action_space(a).shape, value, np.float32) for a in env.agents}


def with_action(env, value):
    acts = good_actions(env)
    acts[env.agents[0]] = value
    return acts


STEP_CASES = {
    "wrong shape": (lambda env: with_action(env, np.zeros(2, np.float32)), ValueError, r"shape \(2,\); expected \(5,\)"),
    "integer dtype": (lambda env: with_action(env, np.zeros(5, np.int64)), ValueError, "pass floats"),
    "NaN action": (lambda env: with_action(env, np.full(5, np.nan, np.float32)), ValueError, "NaN or inf"),
    "inf action": (lambda env: with_action(env, np.full(5, np.inf, np.float32)), ValueError, "NaN or inf"),
    "unknown agent": (lambda env: {**good_actions(env), "neuron_99": np.zeros(5, np.float32)}, KeyError,
                      "unknown agent 'neuron_99'"),
    "missing actions": (lambda env: dict(list(good_actions(env).items())[1:]), KeyError,
                        "missing actions for live agents.*pass one action for every agent"),
    "not a dict": (lambda env: [0.0] * 5, ValueError, "must be a dict"),
}


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_bad_actions_are_refused_and_leave_state_untouched(case):
    make, exc, message = STEP_CASES[case]
    env = fresh_env()
    before = [p.clone() for p in env.core.params]
    t_before = env.core.t.clone()
    with pytest.raises(exc, match=message):
        env.step(make(env))
    for p, q in zip(before, env.core.params):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert torch.equal(env.core.t, t_before)
    env.step(good_actions(env))  # the env still works


def test_out_of_bound_actions_are_clipped_by_default_and_refused_on_request():
    a, b = fresh_env(), fresh_env()
    a.step(good_actions(a, 5.0))
    b.step(good_actions(b, 1.0))
    for p, q in zip(a.core.params, b.core.params):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    strict = fresh_env(clip_actions=False)
    with pytest.raises(ValueError, match="outside \\[-1, 1\\] with clip_actions=False"):
        strict.step(good_actions(strict, 1.5))


def test_step_before_reset_and_after_the_end():
    env = network_weights_v0.parallel_env(layers=LAYERS, max_cycles=2)
    with pytest.raises(ValueError, match="before reset.*call reset"):
        env.step({})
    env.reset(seed=0)
    acts = good_actions(env)
    env.step(acts)
    env.step(acts)
    assert env.agents == []
    with pytest.raises(ValueError, match="episode has ended.*call reset"):
        env.step(acts)  # the agents are dead
    env.reset()
    env.step(good_actions(env))


def test_unknown_agent_in_space_lookup():
    env = fresh_env()
    with pytest.raises(KeyError, match="unknown agent 'bob'"):
        env.observation_space("bob")


CONFIG_CASES = {
    "unknown scheme": (dict(reward="fame"), "reward='fame' is unknown; choose one of .*global_loss"),
    "unknown task": (dict(task="cifar"), "task='cifar' is unknown; choose one of .*teacher_student"),
    "weight_max needs incoming": (dict(reward="weight_max"), "needs ownership='incoming'.*pass ownership='incoming'"),
    "empty layers": (dict(layers=()), "at least two positive sizes"),
    "zero-width layer": (dict(layers=(4, 0, 3)), "at least two positive sizes"),
    "unknown ownership": (dict(ownership="shared"), "choose one of \\['incoming', 'outgoing'\\]"),
    "misspelled argument": (dict(max_cycle=5), "unknown argument 'max_cycle'; did you mean 'max_cycles'"),
    "unknown feature": (dict(observations=("weight", "dopamine")), "unknown observation features \\['dopamine'\\]"),
    "no features": (dict(observations=()), "enable at least one feature"),
    "bias under outgoing": (dict(bias=True), "bias=True needs ownership='incoming'"),
    "task and network disagree": (dict(task="digits", layers=(4, 5, 3)), "set layers=\\(64, ..., 10\\)"),
    "bad local_ratio": (dict(reward="difference", local_ratio=2.0), "local_ratio=2.0 must be in \\[0, 1\\]"),
    "bad activation": (dict(hidden_activation="gelu"), "hidden_activation='gelu' is unknown"),
    "difference with stochastic units": (dict(reward="difference", hidden_activation="bernoulli"),
                                         "needs deterministic units"),
    "gradient of stochastic units": (dict(hidden_activation="bernoulli", observations=("weight", "gradient")),
                                     "backprop through sampled Bernoulli units is undefined"),
    "bad split": (dict(split="test"), "split='test' is unknown"),
    "non-positive horizon": (dict(max_cycles=0), "max_cycles=0 must be a positive integer"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_configs_fail_at_construction_listing_valid_choices(case):
    kwargs, message = CONFIG_CASES[case]
    kwargs = {"layers": LAYERS, **kwargs}
    with pytest.raises(ValueError, match=message):
        network_weights_v0.parallel_env(**kwargs)


def test_core_refuses_wrong_tensor_shapes_and_unseeded_reset():
    core = NetworkWeightsCore(EnvConfig(layers=LAYERS), copies=2)
    with pytest.raises(ValueError, match="seed the core before reset"):
        core.reset()
    core.seed([0, 1])
    with pytest.raises(ValueError, match="step\\(\\) before reset"):
        core.step(torch.zeros(2, 9, 5))
    core.reset()
    with pytest.raises(ValueError, match="expected \\(2, 9, 5\\)"):
        core.step(torch.zeros(1, 9, 5))
    with pytest.raises(ValueError, match="one seed per copy"):
        core.seed([0])


@pytest.mark.skipif(sys.flags.optimize > 0, reason="this is the test that launches the -O run")
def test_the_bad_input_table_holds_under_python_O():
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-O", "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "not python_O"],
        capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
