"""The fast path through Tune: ``marl-net tune`` runs a ``path: fast`` launch with the function
trainable, reports metrics and checkpoints that hold the full training state."""

from __future__ import annotations

import torch

from marl_net.experiment import load_launch
from marl_net.fast.tune_trainable import trainer_from_launch


def test_fast_quick_launch_runs_in_tune_and_its_checkpoint_resumes_exactly(ray_session, tmp_path):
    from marl_net.commands.tune import run_launch

    launch = load_launch("experiments/configs/fast_quick.yaml", [f"run.storage_path={tmp_path}"])
    results = run_launch(launch)
    (result,) = list(results)
    assert result.metrics["training_iteration"] == 2
    assert result.metrics["num_agent_steps_sampled_lifetime"] == 2 * 20 * 16 * (8 + 16)
    for key in ("episode_return_mean", "inner_loss_final", "approx_kl", "clipfrac", "explained_variance",
                "agent_steps_per_s"):
        assert key in result.metrics
    runners = result.metrics["env_runners"]
    assert runners["inner_loss_improvement"] == runners["inner_loss_initial"] - runners["inner_loss_final"]
    assert result.checkpoint is not None
    assert any((p / "fast_ppo").is_dir() for p in tmp_path.rglob("*") if p.is_dir())  # TensorBoard events

    # The trial's last checkpoint restores into a trainer that equals two in-process iterations.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trial (torch_threads: 1)
    try:
        expected = trainer_from_launch(launch)
        for _ in range(2):
            expected.train()
        restored = trainer_from_launch(launch)
        with result.checkpoint.as_directory() as directory:
            restored.restore(directory)
    finally:
        torch.set_num_threads(threads)
    assert restored.iteration == 2
    for x, y in zip(expected.policy.state_dict().values(), restored.policy.state_dict().values()):
        assert torch.equal(x, y)


def test_a_two_worker_launch_holds_two_cpus_and_counts_both_workers_samples(ray_session, tmp_path):
    from marl_net.commands.tune import run_launch

    launch = load_launch("experiments/configs/fast_quick.yaml",
                         [f"run.storage_path={tmp_path}", "ppo.workers=2", "stop.training_iteration=1"])
    (result,) = list(run_launch(launch))
    assert result.metrics["training_iteration"] == 1
    assert result.metrics["num_agent_steps_sampled_lifetime"] == 20 * 16 * (8 + 16)  # every copy, both workers'
    assert result.metrics["episodes_this_iter"] == 16
    assert result.checkpoint is not None


def test_launch_calibrates_feature_scales_as_the_rllib_path_does_unless_switched_off():
    launch = {"env": {"layers": [4, 6, 2], "max_cycles": 3}, "policy": {"hidden": 8}, "ppo": {"copies": 2},
              "run": {"seed": 3}}
    calibrated = trainer_from_launch(launch).policy.feature_scale
    plain = trainer_from_launch({**launch, "run": {"seed": 3, "calibrate_features": False}}).policy.feature_scale
    assert torch.equal(plain, torch.ones_like(plain))
    assert not torch.equal(calibrated, plain) and torch.isfinite(calibrated).all()
    assert torch.equal(calibrated, trainer_from_launch(launch).policy.feature_scale)  # same seed, same scales
