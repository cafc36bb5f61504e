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
    # nothing silently accepted: types first
    "layers as a string": (dict(layers="84"), "layers='84' must be a list of integers"),
    "fractional layer size": (dict(layers=(8.7, 16, 4)), r"layers\[0\]=8.7 must be an integer"),
    "boolean layer size": (dict(layers=(4, True, 3)), r"layers\[1\]=True must be an integer"),
    "string for a boolean": (dict(clip_actions="no"), "clip_actions='no' must be a boolean"),
    "number for a boolean": (dict(bias=1, ownership="incoming"), "bias=1 must be a boolean"),
    "negative penalty": (dict(divergence_penalty=-1.0), "divergence_penalty=-1.0 must not be negative"),
    "NaN penalty": (dict(divergence_penalty=float("nan")), "divergence_penalty=nan must be a finite number"),
    "infinite action scale": (dict(action_scale=float("inf")), "action_scale=inf must be a finite number"),
    "zero action scale": (dict(action_scale=0.0), "action_scale=0.0 must be positive"),
    "string action scale": (dict(action_scale="0.1"), "action_scale='0.1' must be a number"),
    "infinite threshold": (dict(divergence_threshold=float("inf")), "divergence_threshold=inf must be a finite number"),
    "negative threshold": (dict(divergence_threshold=-5.0), "divergence_threshold=-5.0 must be positive"),
    "fractional horizon": (dict(max_cycles=2.5), "max_cycles=2.5 must be an integer"),
    "string horizon": (dict(batch_size="32"), "batch_size='32' must be an integer"),
    "features as a string": (dict(observations="weight"), "observations='weight' must be a list of names"),
    "task kwargs not a mapping": (dict(task_kwargs=[1]), "task_kwargs=\\[1\\] must be a mapping"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_configs_fail_at_construction_listing_valid_choices(case):
    kwargs, message = CONFIG_CASES[case]
    kwargs = {"layers": LAYERS, **kwargs}
    with pytest.raises(ValueError, match=message):
        network_weights_v0.parallel_env(**kwargs)


def test_valid_values_of_other_types_are_normalized_not_refused():
    config = EnvConfig(layers=[np.int64(4), 5, 3], observations=["weight", "gradient"], action_scale=1,
                       clip_actions=np.bool_(False))
    assert config.layers == (4, 5, 3) and all(type(n) is int for n in config.layers)
    assert config.observations == ("weight", "gradient") and config.clip_actions is False


@pytest.fixture
def user_scheme():
    """Register a reward scheme under a fresh name for one test (removed afterwards)."""
    from marl_net.rewards import REWARDS, register_reward

    names = []

    def register(name, fn):
        register_reward(name, "a test scheme")(fn)
        names.append(name)
        return name

    yield register
    for name in names:
        REWARDS.pop(name)


def test_a_scheme_returning_nan_is_named_unless_the_network_diverged(user_scheme):
    name = user_scheme("nan_scheme", lambda ctx: torch.full((ctx.loss.shape[0], ctx.ownership.num_agents), float("nan")))
    env = fresh_env(reward=name)
    with pytest.raises(ValueError, match="reward scheme 'nan_scheme' returned NaN or inf rewards for copies \\[0\\]"):
        env.step(good_actions(env))
    # a diverging network: its rewards may be NaN (the network's doing); the penalty is paid instead
    diverging = network_weights_v0.parallel_env(layers=LAYERS, reward=name, action_scale=1e5, divergence_penalty=7.0)
    diverging.reset(seed=0)
    _, rewards, terminated, _, _ = diverging.step(good_actions(diverging, 1.0))
    assert set(rewards.values()) == {-7.0} and all(terminated.values())


def test_a_scheme_returning_the_wrong_shape_or_dtype_is_named(user_scheme):
    per_copy = user_scheme("per_copy_scheme", lambda ctx: -ctx.loss)  # [E]: would pay only some agents
    with pytest.raises(ValueError, match=r"reward scheme 'per_copy_scheme' returned \(1,\); .*\[copies, agents\] = \[1, 9\]"):
        fresh_env(reward=per_copy).step(good_actions(fresh_env()))
    ints = user_scheme("int_scheme", lambda ctx: torch.zeros(ctx.loss.shape[0], ctx.ownership.num_agents, dtype=torch.long))
    with pytest.raises(ValueError, match="reward scheme 'int_scheme' returned dtype torch.int64"):
        fresh_env(reward=ints).step(good_actions(fresh_env()))
    listed = user_scheme("list_scheme", lambda ctx: [[0.0] * ctx.ownership.num_agents])
    with pytest.raises(ValueError, match="reward scheme 'list_scheme' returned list"):
        fresh_env(reward=listed).step(good_actions(fresh_env()))


def test_yaml_numbers_are_numbers():
    from marl_net.experiment import parse_override
    from marl_net.yaml_numbers import load

    assert load("lr: 1e-3\nscale: -2E5\nx: 3.0e-4\nn: 10\nname: 1e\n") == {
        "lr": 0.001, "scale": -200000.0, "x": 0.0003, "n": 10, "name": "1e"}
    assert parse_override("ppo.lr=1e-3") == (["ppo", "lr"], 0.001)
    assert parse_override("ppo.lr={grid_search: [1e-3, 3e-4]}")[1] == {"grid_search": [0.001, 0.0003]}


def test_yaml_launch_config_numbers_are_numbers(tmp_path):
    from marl_net.experiment import load_launch

    file = tmp_path / "launch.yaml"
    file.write_text("path: fast\nppo: {lr: 1e-3, entropy_coeff: 1e-2}\nstop: {training_iteration: 2}\n")
    launch = load_launch(file, ["env.action_scale=5e-2"])
    assert launch["ppo"] == {"lr": 0.001, "entropy_coeff": 0.01}
    assert launch["env"]["action_scale"] == 0.05


LAUNCH_CASES = {  # every section of a launch, names and values, refused before Tune starts
    "env value": ({"env": {"layers": "84"}}, "env section: layers='84' must be a list of integers"),
    "env name": ({"env": {"layer": [4, 5, 3]}}, "env section: unknown argument 'layer'; did you mean 'layers'"),
    "env grid value": ({"env": {"clip_actions": {"grid_search": [True, "no"]}}},
                       "env section: clip_actions='no' must be a boolean"),
    "policy name": ({"policy": {"hiden": 32}}, "unknown policy setting .*'hiden'; did you mean 'hidden'"),
    "policy value": ({"policy": {"hidden": "32"}}, "policy section: hidden='32' must be an integer"),
    "policy grid value": ({"policy": {"depth": {"grid_search": [1, 2.5]}}}, "policy section: depth=2.5 must be an integer"),
    "ppo name": ({"ppo": {"lrr": 0.1}}, "ppo section: unknown ppo key 'lrr'; did you mean 'lr'"),
    "ppo string number": ({"ppo": {"lr": "1e-3x"}}, "ppo section: lr='1e-3x' must be a number"),
    "ppo range": ({"ppo": {"gamma": 1.5}}, "ppo section: gamma=1.5 must be in \\[0, 1\\]"),
    "ppo boolean": ({"ppo": {"normalize_advantages": "yes"}}, "normalize_advantages='yes' must be a boolean"),
    "stop name": ({"stop": {"training_iterations": 3}}, "unknown stop criterion 'training_iterations'; did you mean "
                                                         "'training_iteration'"),
    "stop value": ({"stop": {"training_iteration": "ten"}}, "stop.training_iteration='ten' must be a number"),
    "stop iterations": ({"stop": {"training_iteration": 2.5}}, "stop.training_iteration=2.5 must be a positive integer"),
    "stop NaN": ({"stop": {"inner_loss_final": float("nan")}}, "stop.inner_loss_final=nan must be a number"),
    "run name": ({"run": {"nme": "x"}}, "unknown run setting 'nme'; did you mean 'name'"),
    "run boolean": ({"run": {"checkpoint_at_end": "maybe"}}, "run.checkpoint_at_end='maybe' must be a boolean"),
    "run samples": ({"run": {"num_samples": 0}}, "run.num_samples=0 must be at least 1"),
    "run seed": ({"run": {"seed": 1.5}}, "run.seed=1.5 must be an integer"),
    "run seed grid": ({"run": {"seed": {"grid_search": [0, "one"]}}}, "run.seed='one' must be an integer"),
    "run storage": ({"run": {"storage_path": 3}}, "run.storage_path=3 must be a folder"),
    "run keep": ({"run": {"keep_checkpoints_num": 0}}, "run.keep_checkpoints_num=0 must be a positive integer"),
}


@pytest.mark.parametrize("case", list(LAUNCH_CASES))
def test_every_launch_section_is_validated_names_and_values(case):
    from marl_net.experiment import validate_launch

    section, message = LAUNCH_CASES[case]
    with pytest.raises(ValueError, match=message):
        validate_launch({"path": "fast", "env": {"layers": [4, 5, 3]}, **section})


def test_rllib_launch_ppo_values_are_validated():
    pytest.importorskip("ray.rllib")
    from marl_net.experiment import validate_launch

    for ppo, message in (({"lr": "banana"}, "ppo section: lr='banana' must be a number"),
                         ({"num_epochs": 2.5}, "ppo section: num_epochs=2.5 must be an integer"),
                         ({"gamma": -0.1}, r"ppo section: gamma=-0.1 must be in \[0, 1\]"),
                         ({"use_kl_loss": "no"}, "ppo section: use_kl_loss='no' must be a boolean")):
        with pytest.raises(ValueError, match=message):
            validate_launch({"path": "rllib", "ppo": ppo})
    validate_launch({"path": "rllib", "ppo": {"lr": [[0, 1e-3], [1000, 0.0]], "use_kl_loss": False,
                                              "num_cpus_per_env_runner": 0.5}})  # schedules, fractional CPUs


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr="1e-3"), "lr='1e-3' must be a number"),
    (dict(num_epochs=4.0), "num_epochs=4.0 must be an integer"),
    (dict(lr=float("inf")), "lr=inf must be a finite number"),
    (dict(normalize_advantages="yes"), "normalize_advantages='yes' must be a boolean"),
    (dict(copies=True), "copies=True must be an integer"),
])
def test_fast_ppo_config_types(kwargs, message):
    from marl_net.fast.ppo import FastPPOConfig

    with pytest.raises(ValueError, match=message):
        FastPPOConfig(**kwargs)


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
