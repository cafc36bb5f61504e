"""The RLlib path end to end on the session's 2-CPU Ray: a Tune launch from YAML, the reward scheme
read back from the runners' envs, and the checkpoint round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from marl_net import cli
from marl_net.rllib.algo import build_ppo_config
from marl_net.policies.rllib_module import SHARED_MODULE_ID

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
# A tiny network and batch: the point is the plumbing, not learning.
SMALL = ["env.layers=[4, 6, 2]", "env.max_cycles=5", "policy.hidden=8", "ppo.train_batch_size=120",
         "ppo.minibatch_size=60", "ppo.num_epochs=1"]
SMALL_LAUNCH = {"env": {"layers": [4, 6, 2], "max_cycles": 5}, "policy": {"hidden": 8},
                "ppo": {"train_batch_size": 120, "minibatch_size": 60, "num_epochs": 1}, "run": {"seed": 3}}


def _scalars(event_file: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_file))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_two_iteration_tune_launch_writes_events_checkpoint_and_aggregate_metrics(ray_session, tmp_path, capsys):
    rc = cli.main(["tune", "--config", str(CONFIGS / "rllib_quick.yaml"), "--set", f"run.storage_path={tmp_path}",
                   "--set", "stop.training_iteration=2", *sum([["--set", s] for s in SMALL], [])])
    assert rc == 0
    trials = list((tmp_path / "rllib_quick").glob("PPO_*"))
    assert len(trials) == 1
    trial = trials[0]
    assert (trial / "checkpoint_000001" / "rllib_checkpoint.json").exists()
    events = list(trial.glob("events.out.tfevents.*"))
    assert events
    tags = _scalars(events[0])
    for key in ("inner_loss_final", "inner_loss_improvement", "neuron_return_mean"):
        assert f"ray/tune/env_runners/{key}" in tags
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in results] == [1, 2]
    last = results[-1]
    assert last["fault_tolerance"]["num_healthy_workers"] == 1  # the remote env runner did the sampling
    runners = last["env_runners"]
    assert np.isfinite(runners["inner_loss_final"]) and runners["num_episodes_lifetime"] > 0
    # aggregate metrics only: no key anywhere is named for an agent
    flat = json.dumps(last)
    assert "neuron_0" not in flat and "agent_episode_returns_mean" not in flat
    assert runners["num_agent_steps_sampled_lifetime"] == {"all_agents": pytest.approx(runners["num_agent_steps_sampled_lifetime"]["all_agents"])}
    out = capsys.readouterr().out
    assert "inner_loss_final=" in out


def _schemes_in_runners(algo) -> list[str]:
    return algo.env_runner_group.foreach_env_runner(
        lambda runner: runner.env.envs[0].unwrapped.core.scheme.name, local_env_runner=False)


def test_reward_swap_reaches_the_runners_and_checkpoint_round_trip(ray_session, tmp_path):
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.core.rl_module.rl_module import RLModule

    from marl_net.envs import network_weights_v0
    from marl_net.rllib.checkpoints import module_dir

    algo = build_ppo_config({**SMALL_LAUNCH, "env": {**SMALL_LAUNCH["env"], "reward": "loss_improvement"}}).build_algo()
    try:
        assert _schemes_in_runners(algo) == ["loss_improvement"]
    finally:
        algo.stop()

    launch = {**SMALL_LAUNCH, "env": {**SMALL_LAUNCH["env"], "reward": "difference"}}
    algo = build_ppo_config(launch).build_algo()
    try:
        assert _schemes_in_runners(algo) == ["difference"]
        # feature scales calibrated on start, the same on the learner and the remote runner
        learner_scale = algo.get_module(SHARED_MODULE_ID).policy.feature_scale.tolist()
        assert any(abs(x - 1.0) > 1e-3 for x in learner_scale)
        assert algo.env_runner_group.foreach_env_runner(
            lambda r: r.module[SHARED_MODULE_ID].policy.feature_scale.tolist(), local_env_runner=False) == [learner_scale]
        algo.train()
        checkpoint = algo.save_to_path(str(tmp_path / "ckpt"))
        obs, _ = network_weights_v0.parallel_env(**launch["env"]).reset(seed=11)
        batch = torch.as_tensor(np.stack(list(obs.values())))
        means = algo.get_module(SHARED_MODULE_ID).action_means(batch)
        assert means.abs().sum() > 0
    finally:
        algo.stop()

    restored = Algorithm.from_checkpoint(checkpoint)
    try:
        assert torch.equal(restored.get_module(SHARED_MODULE_ID).action_means(batch), means)
    finally:
        restored.stop()
    module = RLModule.from_checkpoint(str(module_dir(checkpoint)))  # the module alone, for evaluation
    assert torch.equal(module.action_means(batch), means)
    assert all(k.startswith("policy.") for k in module.state_dict())

    rc = cli.main(["eval", checkpoint, "--episodes", "3", "--out", str(tmp_path / "eval")])
    assert rc == 0
    assert (tmp_path / "eval" / "loss_curve.png").stat().st_size > 0
    curve = json.loads((tmp_path / "eval" / "loss_curve.json").read_text())
    assert curve["env_config"]["split"] == "heldout" and len(curve["loss_mean"]) == launch["env"]["max_cycles"] + 1
    assert curve["env_config"]["reward"] == "difference"  # the env settings it trained with
    # the rule is per synapse: the same checkpoint runs a wider network
    rc = cli.main(["eval", checkpoint, "--episodes", "2", "--layers", "4", "12", "2", "--out", str(tmp_path / "wide")])
    assert rc == 0
    assert json.loads((tmp_path / "wide" / "loss_curve.json").read_text())["env_config"]["layers"] == [4, 12, 2]
