"""Fast PPO and RLlib PPO described in one vocabulary from their built configs: the like-for-like
RLlib settings reproduce fast PPO's objective and optimizer steps, RLlib's defaults do not, and
each difference is named."""

import math

import pytest

from marl_net.fast.ppo import FastPPOConfig
from marl_net.ppo_objective import differences, fast_ppo_objective, rllib_ppo_objective, rllib_settings_like
from marl_net.rllib.algo import build_ppo_config

FAST = FastPPOConfig(lr=3e-4, gamma=0.99, lambda_=0.95, clip_param=0.2, vf_loss_coeff=0.5, grad_clip=0.5,
                     num_epochs=4, minibatch_size=30720)
BATCH = 122880  # fast PPO's agent-steps per iteration: 4 minibatches


def _rllib(ppo):
    return build_ppo_config({"env": {"layers": [8, 16, 4], "max_cycles": 20}, "ppo": ppo})


def test_the_like_for_like_rllib_config_has_fast_ppos_objective_and_steps():
    settings = rllib_settings_like(FAST, BATCH, 4800)
    rllib = rllib_ppo_objective(_rllib(settings))
    fast = fast_ppo_objective(FAST, BATCH)
    assert differences(fast, rllib) == []
    # fast PPO's 0.5 * 0.5 (v - R)^2 is RLlib's 0.25 (v - R)^2; no KL; the squared error unbounded
    assert rllib["value_loss_coeff"] == 0.25 and rllib["kl_coeff"] == 0.0 and rllib["value_loss_clip"] is None
    assert rllib["minibatches_per_epoch"] == 4 and settings["minibatch_size"] == 1200
    assert math.isinf(settings["vf_clip_param"]) and settings["grad_clip_by"] == "global_norm"


def test_rllibs_default_objective_differs_and_each_difference_is_named():
    rllib = rllib_ppo_objective(_rllib({"lr": 3e-4, "gamma": 0.99, "lambda_": 0.95, "clip_param": 0.2,
                                        "num_epochs": 4, "train_batch_size": 4800, "minibatch_size": 256}))
    assert differences(fast_ppo_objective(FAST, BATCH), rllib) == [
        "kl_coeff", "value_loss_coeff", "value_loss_clip", "grad_clip_global_norm", "minibatches_per_epoch"]
    one_off = {**rllib_settings_like(FAST, BATCH, 4800), "grad_clip": 0.5, "grad_clip_by": "value"}
    assert differences(fast_ppo_objective(FAST, BATCH), rllib_ppo_objective(_rllib(one_off))) == [
        "grad_clip_global_norm"]


def test_settings_that_cannot_be_matched_are_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        rllib_settings_like(FAST, BATCH, 4801)
    with pytest.raises(ValueError, match="lr_anneal_iterations=None"):
        fast_ppo_objective(FastPPOConfig(lr_anneal_iterations=10), BATCH)
