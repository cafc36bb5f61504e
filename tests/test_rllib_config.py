"""Launch configs: YAML + --set overrides + grids, and clear errors for bad ones (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marl_net.experiment import apply_overrides, load_launch, validate_launch
from marl_net.rllib.algo import build_ppo_config, param_space

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("rllib_*.yaml")))
def test_shipped_rllib_configs_validate_and_build(name):
    launch = load_launch(CONFIGS / name)
    assert launch["path"] == "rllib" and launch["run"]["name"]
    space = param_space(launch)
    assert space["count_steps_by"] == "agent_steps"


def test_set_overrides_parse_yaml_values_and_make_grids():
    launch = load_launch(CONFIGS / "rllib_quick.yaml", [
        "env.reward=difference", "ppo.lr={grid_search: [1.0e-3, 3.0e-4]}", "stop.training_iteration=5",
        "env.layers=[8, 32, 4]"])
    assert launch["env"]["reward"] == "difference" and launch["env"]["layers"] == [8, 32, 4]
    assert launch["stop"]["training_iteration"] == 5
    space = param_space(launch)
    assert space["lr"] == {"grid_search": [1.0e-3, 3.0e-4]}
    assert space["env_config"]["reward"] == "difference"


def test_reward_grid_reaches_the_env_config_and_one_trial_config_builds():
    launch = load_launch(CONFIGS / "rllib_reward_schemes.yaml")
    space = param_space(launch)
    assert space["env_config"]["reward"]["grid_search"] == ["global_loss", "loss_improvement", "difference", "weight_max"]
    assert build_ppo_config(launch).env_config["reward"] == "global_loss"  # first grid value


@pytest.mark.parametrize("launch, message", [
    ({"path": "rllib", "envv": {}}, "unknown top-level key 'envv'; did you mean 'env'"),
    ({"path": "rlib"}, "path='rlib' is unknown"),
    ({}, "path=None is unknown"),
    ({"path": "rllib", "env": {"rewrd": "global_loss"}}, "did you mean 'reward'"),
    ({"path": "rllib", "env": {"reward": "nope"}}, "reward='nope' is unknown"),
    ({"path": "rllib", "env": {"reward": {"grid_search": ["global_loss", "weight_max"]}}}, "needs ownership='incoming'"),
    ({"path": "rllib", "env": {"reward": {"grid_search": []}}}, "non-empty list"),
    ({"path": "rllib", "ppo": {"learning_rate": 0.1}}, "ppo.learning_rate is not a PPOConfig setting"),
    ({"path": "rllib", "policy": {"num_features": 4}}, "num_features follows from the env"),
    ({"path": "rllib", "run": {"max_failure": 2}}, "did you mean 'max_failures'"),
    ({"path": "rllib", "env": [1, 2]}, "section 'env' must be a mapping"),
    ({"path": "fast", "ppo": {"num_epoch": 2}}, "did you mean 'num_epochs'"),
    ({"path": "fast", "ppo": {"lr": {"grid_search": [1e-3, -1.0]}}}, "lr=-1.0 must be positive"),
])
def test_bad_launch_configs_raise_clear_errors(launch, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        validate_launch(launch)


def test_bad_overrides_and_files_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="write key=value"):
        apply_overrides({}, ["env.reward"])
    with pytest.raises(ValueError, match="unknown top-level key in --set 'evn'"):
        apply_overrides({}, ["evn.reward=x"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_launch(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        load_launch(bad)


def test_policy_grid_is_refused_on_the_rllib_path():
    launch = validate_launch({"path": "rllib", "policy": {"hidden": {"grid_search": [16, 32]}}})
    with pytest.raises(ValueError, match="cannot be grid-searched"):
        param_space(launch)


def test_task_sizes_ownership_and_observation_features_are_grid_searchable():
    launch = validate_launch({"path": "rllib", "env": {
        "layers": {"grid_search": [[8, 16, 4], [8, 32, 4]]},
        "ownership": {"grid_search": ["outgoing", "incoming"]},
        "observations": {"grid_search": [["weight", "loss"], ["weight", "prev_delta", "pre_activity", "loss"]]},
    }, "ppo": {"gamma": {"grid_search": [0.9, 0.99]}}, "run": {"seed": {"grid_search": [0, 1]}}})
    space = param_space(launch)
    assert space["env_config"]["observations"]["grid_search"][1] == ["weight", "prev_delta", "pre_activity", "loss"]
    assert space["env_config"]["layers"]["grid_search"] == [[8, 16, 4], [8, 32, 4]]
    assert space["gamma"] == {"grid_search": [0.9, 0.99]} and space["seed"] == {"grid_search": [0, 1]}


def test_module_reads_its_feature_count_from_the_spaces():
    from marl_net.envs import network_weights_v0
    from marl_net.policies.rllib_module import SynapseRLModule

    env = network_weights_v0.parallel_env(layers=[8, 32, 4], observations=["weight", "loss"])
    agent = env.possible_agents[0]
    module = SynapseRLModule(observation_space=env.observation_space(agent), action_space=env.action_space(agent),
                             model_config={"hidden": 8, "vf_share_layers": True})  # RLlib's own keys are ignored
    assert module.policy.config.num_features == 3 and module.policy.config.hidden == 8
