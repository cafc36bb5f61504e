"""network_weights_v0 against PettingZoo's API tests, plus our own determinism, pickling and
max-cycles checks, for every valid ownership x reward scheme x task combination."""

import pickle
import warnings

import numpy as np
import pytest
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

from marl_net.envs import network_weights_v0
from marl_net.rewards import REWARDS

TASK_SETTINGS = {
    "teacher_student": dict(layers=(5, 6, 3)),
    "digits": dict(layers=(10, 6, 10), task_kwargs={"pca": 10}),
    "multiplexer": dict(layers=(20, 6, 2)),
    "teacher_classes": dict(layers=(5, 6, 3)),
    "mnist": dict(layers=(10, 6, 10)),  # task_kwargs filled with the tiny IDX directory
}


def valid_combinations():
    for task in TASK_SETTINGS:
        for ownership in ("outgoing", "incoming"):
            for reward, scheme in REWARDS.items():  # (schemes that read RL action values: tests/test_rl_env.py)
                if scheme.ownership in (None, ownership) and not scheme.action_values:
                    yield task, ownership, reward


def make_kwargs(task, ownership, reward, mnist_dir, **extra):
    kw = dict(task=task, ownership=ownership, reward=reward, max_cycles=6, batch_size=8, **TASK_SETTINGS[task])
    if task == "mnist":
        kw["task_kwargs"] = {"data_dir": str(mnist_dir), "num_samples": 20}
    if ownership == "incoming":
        kw["bias"] = True
    kw.update(extra)
    return kw


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    from tests.conftest import make_tiny_mnist

    return make_tiny_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.mark.parametrize("task,ownership,reward", list(valid_combinations()))
def test_pettingzoo_api_tests_pass_without_warnings(task, ownership, reward, mnist_dir):
    kwargs = make_kwargs(task, ownership, reward, mnist_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        parallel_api_test(network_weights_v0.parallel_env(**kwargs), num_cycles=10)
        api_test(parallel_to_aec(network_weights_v0.parallel_env(**kwargs)), num_cycles=10)


def test_guarded_aec_factory_passes_api_test():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api_test(network_weights_v0.env(layers=(8, 5, 4), max_cycles=5), num_cycles=10)


def test_max_cycles():
    max_cycles_test(network_weights_v0)


def rollout(env, seed, steps):
    """Observations, rewards and endings of ``steps`` steps with actions drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for _ in range(steps):
        if not env.agents:
            obs, _ = env.reset()
            trace.append(obs)
            continue
        acts = {a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in env.agents}
        trace.append(env.step(acts)[:4])
    return trace


@pytest.mark.parametrize("reward,ownership", [("global_loss", "outgoing"), ("difference", "outgoing"),
                                              ("weight_max", "incoming")])
def test_multi_step_seeded_determinism(reward, ownership):
    make = lambda: network_weights_v0.parallel_env(layers=(5, 7, 3), reward=reward, ownership=ownership,  # noqa: E731
                                                   max_cycles=8)
    a, b = rollout(make(), 3, 20), rollout(make(), 3, 20)  # 20 steps span an autoreset-free second episode
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert pickle.dumps(x) == pickle.dumps(y)
    c = rollout(make(), 4, 20)
    assert pickle.dumps(a[1]) != pickle.dumps(c[1])


def test_unseeded_reset_draws_from_np_random_and_reseeding_restarts_the_stream():
    env = network_weights_v0.parallel_env(layers=(5, 7, 3))
    first, _ = env.reset(seed=11)
    again, _ = env.reset(seed=11)
    other, _ = env.reset()
    key = env.possible_agents[0]
    np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first[key], other[key])


def test_pickle_round_trip_continues_identically():
    env = network_weights_v0.parallel_env(layers=(5, 7, 3), reward="loss_improvement", max_cycles=10)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.config == env.config
    a, b = rollout(env, 5, 6), rollout(clone, 5, 6)
    for x, y in zip(a, b):
        assert pickle.dumps(x) == pickle.dumps(y)


def test_spaces_are_the_same_object_every_call():
    env = network_weights_v0.parallel_env(layers=(5, 7, 3))
    a = env.possible_agents[0]
    assert env.observation_space(a) is env.observation_space(env.possible_agents[-1])
    assert env.action_space(a) is env.action_space(a)
    k = 7  # largest fan under outgoing ownership: the 7 hidden units' outgoing 3, the inputs' 7
    assert env.action_space(a).shape == (k,)
    obs, _ = env.reset(seed=0)
    table = obs[a].reshape(k, -1)
    assert table[:, -1].tolist() == [1.0] * 7  # input neuron: 7 real synapses
    hidden = obs[env.possible_agents[-1]].reshape(k, -1)
    assert hidden[:, -1].tolist() == [1, 1, 1, 0, 0, 0, 0] and not hidden[3:].any()


def test_agent_ids_follow_pettingzoo_convention_and_ownership():
    out = network_weights_v0.parallel_env(layers=(2, 3, 1), ownership="outgoing")
    inc = network_weights_v0.parallel_env(layers=(2, 3, 1), ownership="incoming")
    assert out.possible_agents == [f"neuron_{i}" for i in range(5)]
    assert inc.possible_agents == [f"neuron_{i}" for i in range(2, 6)]
