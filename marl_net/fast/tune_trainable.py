"""The fast path as a Tune function trainable: ``train_fast(config)``.

``config`` is a launch dict (see ``marl_net.experiment``) with grids already resolved by Tune::

    env:    {task: teacher_student, layers: [8, 16, 4], reward: global_loss, max_cycles: 20}
    policy: {hidden: 64, depth: 2}
    ppo:    {lr: 3.0e-4, num_epochs: 4, minibatch_size: 256, copies: 16, device: cpu, ...}
    run:    {seed: 0, checkpoint_frequency: 1, ...}
    stop:   {training_iteration: 10}     # optional here; Tune's own stop criteria apply as well

It trains :class:`marl_net.fast.ppo.FastPPO` one iteration per ``tune.report``; every
``run.checkpoint_frequency`` iterations (and at ``stop.training_iteration`` when given) the report
carries a checkpoint of the full training state, and a trial restarted by Tune (worker failure,
``Tuner.restore``) resumes from ``tune.get_checkpoint()`` and continues exactly as an
uninterrupted run would. RLlib-only ``ppo`` keys (``num_env_runners``, ...) are ignored, so one
launch file can be run on either path. CleanRL-style TensorBoard events go to the trial
directory's ``fast_ppo/`` folder, next to Tune's own logs.

Launch it with ``marl-net tune --config experiments/configs/fast_quick.yaml`` or directly::

    from ray import tune
    tune.Tuner(train_fast, param_space=launch_dict).fit()
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any, Mapping

import torch

from marl_net.fast.ppo import FastPPO, FastPPOConfig


def trainer_from_launch(config: Mapping[str, Any], log_dir: str | None = None) -> FastPPO:
    """A :class:`FastPPO` built from a launch dict's ``env``, ``policy``, ``ppo`` and ``run``.

    As on the RLlib path, the policy's per-feature input scales are calibrated
    (``SynapsePolicy.calibrate``) on one episode of the untrained policy, from the same sample
    (``marl_net.evaluation.sample_observations`` with ``run.seed``), unless
    ``run.calibrate_features`` is false. A restored checkpoint brings its own scales."""
    run = config.get("run") or {}
    ppo = FastPPOConfig.from_kwargs(**dict(config.get("ppo") or {}))
    seed = int(run.get("seed") or 0)
    trainer = FastPPO(dict(config.get("env") or {}), dict(config.get("policy") or {}), ppo, seed=seed, log_dir=log_dir)
    if run.get("calibrate_features", True):
        from marl_net.evaluation import sample_observations

        sampler = copy.deepcopy(trainer.policy).cpu()  # the sample is drawn on the CPU core
        scale = sampler.calibrate(sample_observations(sampler, trainer.env.config, seed=seed))
        with torch.no_grad():
            trainer.policy.feature_scale.copy_(scale)
    return trainer


def train_fast(config: dict) -> None:
    from ray import tune

    run = config.get("run") or {}
    frequency = int(run.get("checkpoint_frequency") or 0)
    last = (config.get("stop") or {}).get("training_iteration")
    trial_dir = tune.get_context().get_trial_dir()
    trainer = trainer_from_launch(config, log_dir=os.path.join(trial_dir, "fast_ppo") if trial_dir else None)
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                trainer.restore(directory)
        while last is None or trainer.iteration < int(last):
            metrics = trainer.train()
            at_end = last is not None and trainer.iteration >= int(last)
            if (frequency and trainer.iteration % frequency == 0) or (at_end and run.get("checkpoint_at_end", True)):
                with tempfile.TemporaryDirectory() as directory:
                    trainer.save(directory)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
            else:
                tune.report(metrics)
    finally:
        trainer.close()  # its worker processes (ppo.workers > 1) and TensorBoard writer


# Tell Tune that this trainable writes its own checkpoints (every run.checkpoint_frequency
# iterations and at the end), so a RunConfig with checkpoint_frequency / checkpoint_at_end is
# accepted instead of refused as for plain function trainables.
train_fast._handles_checkpoint_freq = True
train_fast._handles_checkpoint_at_end = True
