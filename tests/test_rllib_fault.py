"""Fault tolerance of the RLlib path, with real crashes (``crash_probability`` makes the core raise
``EnvCrash``): crashed env runners are restarted and training goes on; a trial that fails is
retried from its checkpoint; an interrupted experiment resumes with ``Tuner.restore``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from marl_net.commands.tune import run_launch
from marl_net.experiment import validate_launch
from marl_net.rllib.algo import build_ppo_config

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
ENV = {"layers": [4, 6, 2], "max_cycles": 5}  # 10 agents: 12 env steps per 120-agent-step batch
PPO = {"train_batch_size": 120, "minibatch_size": 60, "num_epochs": 1, "delay_between_env_runner_restarts_s": 0.0}


def test_training_survives_crashed_env_runners(ray_session):
    launch = {"env": {**ENV, "crash_probability": 0.02}, "policy": {"hidden": 8}, "ppo": PPO, "run": {"seed": 0}}
    algo = build_ppo_config(launch).build_algo()
    try:
        restarts, steps_at_restart, result = 0, None, None
        for _ in range(40):
            result = algo.train()
            ft = result["fault_tolerance"]
            steps = result["env_runners"]["num_env_steps_sampled_lifetime"]
            if ft["num_remote_worker_restarts"] > restarts:
                restarts, steps_at_restart = ft["num_remote_worker_restarts"], steps
            elif steps_at_restart is not None and ft["num_healthy_workers"] == 1 and steps > steps_at_restart:
                break  # a restarted runner sampled again
        assert restarts >= 1, "no env runner crashed and came back"
        assert steps_at_restart is not None and steps > steps_at_restart
        assert result["fault_tolerance"]["num_healthy_workers"] == 1
    finally:
        algo.stop()


def _results(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]


def test_failed_trial_is_retried_from_its_checkpoint(ray_session, tmp_path):
    # Without runner restarts a crash fails the trial; FailureConfig(max_failures) restores it from
    # its last checkpoint. The crash stream is seeded, so the restarted runner crashes ~50 steps later.
    launch = validate_launch({
        "path": "rllib", "env": {**ENV, "crash_probability": 0.02}, "policy": {"hidden": 8},
        "ppo": {**PPO, "restart_failed_env_runners": False},
        "stop": {"training_iteration": 6},
        "run": {"name": "retry", "storage_path": str(tmp_path), "checkpoint_frequency": 1, "max_failures": 3, "seed": 0},
    })
    results = run_launch(launch)
    assert results[0].metrics["training_iteration"] == 6
    history = _results(Path(results[0].path))
    assert any(r["iterations_since_restore"] < r["training_iteration"] for r in history), \
        "the trial never failed and resumed from a checkpoint"


def test_interrupted_experiment_resumes_with_tuner_restore(ray_session, tmp_path):
    overrides = [f"run.storage_path={tmp_path}", "run.name=resume", "stop.training_iteration=20",
                 "env.layers=[4, 6, 2]", "env.max_cycles=5", "policy.hidden=8", "ppo.train_batch_size=120",
                 "ppo.minibatch_size=60", "ppo.num_epochs=1"]
    cmd = [sys.executable, "-m", "marl_net.cli", "tune", "--config", str(CONFIGS / "rllib_quick.yaml")]
    proc = subprocess.Popen(cmd + sum([["--set", o] for o in overrides], []),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not list((tmp_path / "resume").glob("PPO_*/checkpoint_000000")):
            assert proc.poll() is None, "the launch ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does: Tune saves its state and stops
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    trial = next((tmp_path / "resume").glob("PPO_*"))
    done_before = len(_results(trial))
    assert done_before < 20, "the launch was not interrupted"

    from marl_net.experiment import load_launch

    launch = load_launch(CONFIGS / "rllib_quick.yaml", overrides)
    results = run_launch(launch, resume=True)
    assert results[0].metrics["training_iteration"] == 20
    assert results[0].metrics["iterations_since_restore"] < 20  # continued from a checkpoint, not from scratch
