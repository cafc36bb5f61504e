"""``experiments/recalibrate_features.py`` repeats the meta-training calibration of a policy's
feature scales on another setting (the evidence in docs/ladder.md, "Not the policy's input scales")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from marl_net.experiment import load_launch
from marl_net.fast.tune_trainable import trainer_from_launch


def _experiment():
    path = Path(__file__).resolve().parents[1] / "experiments" / "recalibrate_features.py"
    spec = importlib.util.spec_from_file_location("recalibrate_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recalibration_on_the_meta_training_setting_gives_back_the_trainers_scales_and_differs_elsewhere():
    """On the env a trainer calibrated on, with its seed, the experiment's procedure gives the
    trainer's feature scales (to 1 %: the untrained policy's near-zero actions differ in the last
    bits); on a wider network it gives other scales, so the first check is not a scale compared
    with itself; the recalibrated rule keeps the trained rule's weights."""
    recalibrated = _experiment().recalibrated
    launch = load_launch("experiments/configs/fast_quick.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = trainer_from_launch(launch)
        trainer.train()  # the weights move; the scales stay those set before training
        config, seed = trainer.env.config, int(launch["run"].get("seed") or 0)
        same = recalibrated(trainer.policy.cpu(), config, seed)
        wide = recalibrated(trainer.policy.cpu(), config.replace(layers=(config.layers[0], 64, config.layers[-1])), seed)
    finally:
        torch.set_num_threads(threads)
    assert not torch.equal(trainer.policy.feature_scale, torch.ones_like(trainer.policy.feature_scale))
    torch.testing.assert_close(same.feature_scale, trainer.policy.feature_scale, rtol=0.01, atol=0)
    assert (wide.feature_scale / trainer.policy.feature_scale - 1).abs().max() > 0.05
    for name, value in trainer.policy.state_dict().items():
        if name != "feature_scale":
            assert torch.equal(same.state_dict()[name], value), name
