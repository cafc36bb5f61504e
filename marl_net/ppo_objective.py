"""PPO's objective and amount of optimization, in one vocabulary for fast PPO and RLlib PPO.

A speed ratio between the two paths means something only when both run the same algorithm: the
same loss and the same number of optimizer steps over each sample. Their configs name things
differently (fast PPO's value loss is ``vf_loss_coeff * (v - R)^2 / 2``, RLlib's
``vf_loss_coeff * min((v - R)^2, vf_clip_param)``; RLlib adds a KL penalty unless
``use_kl_loss=False``; fast PPO counts ``minibatch_size`` over the whole iteration's batch, RLlib
over its ``train_batch_size``), so each side is described here from its *built* config in the
same terms (:data:`KEYS`), and :func:`differences` lists the keys on which they disagree.
:func:`rllib_settings_like` gives the RLlib ``ppo:`` settings that match a fast-PPO config.

RLlib 2.60's PPO (``ray/rllib/algorithms/ppo/torch/ppo_torch_learner.py``,
``PPOConfig.training``): total loss ``mean(-surrogate + vf_loss_coeff * clamp((v - R)^2, 0,
vf_clip_param) - entropy_coeff * entropy) + kl_coeff * KL`` (KL only with ``use_kl_loss``);
defaults ``use_kl_loss=True, kl_coeff=0.2, vf_loss_coeff=1.0, vf_clip_param=10.0, clip_param=0.3,
grad_clip=None, num_epochs=30, minibatch_size=128``; ``grad_clip`` clips by ``grad_clip_by``
(default ``"global_norm"``); ``MiniBatchCyclicIterator`` draws minibatches of ``minibatch_size``
cyclically until every sample was seen ``num_epochs`` times: ``len(batch) / minibatch_size``
minibatches per epoch, rounded up here when it does not divide.

Noted, not compared (they change neither the loss's form nor the work per sample): RLlib
standardizes advantages over the train batch, fast PPO over each minibatch; RLlib's Adam has
``eps=1e-8``, fast PPO's ``1e-5``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

# The terms both sides are described in (see the module docstring).
KEYS = ("clip_param", "kl_coeff", "value_loss_coeff", "value_loss_clip", "grad_clip_global_norm", "entropy_coeff",
        "num_epochs", "minibatches_per_epoch", "lr", "gamma", "lambda")
NOTES = {"advantage_normalization": {"fast_ppo": "per minibatch", "rllib_ppo": "per train batch"},
         "adam_eps": {"fast_ppo": 1e-5, "rllib_ppo": 1e-8}}


def fast_ppo_objective(config, batch: int) -> dict[str, Any]:
    """Fast PPO's ``FastPPOConfig`` ``config`` for iterations of ``batch`` agent-steps, in :data:`KEYS`.
    ``value_loss_coeff`` is the coefficient of ``(v - R)^2`` in the minibatch loss; ``value_loss_clip``
    the bound on that squared error (None: unbounded)."""
    if config.lr_anneal_iterations is not None:
        raise ValueError("an annealed lr is not comparable with RLlib's constant lr: set lr_anneal_iterations=None")
    return {"clip_param": float(config.clip_param), "kl_coeff": 0.0,
            "value_loss_coeff": float(config.vf_loss_coeff) / 2, "value_loss_clip": None,
            "grad_clip_global_norm": None if config.grad_clip is None else float(config.grad_clip),
            "entropy_coeff": float(config.entropy_coeff), "num_epochs": int(config.num_epochs),
            "minibatches_per_epoch": max(1, math.ceil(batch / config.minibatch_size)), "lr": float(config.lr),
            "gamma": float(config.gamma), "lambda": float(config.lambda_)}


def rllib_ppo_objective(config, batch: int | None = None) -> dict[str, Any]:
    """RLlib's built ``PPOConfig`` ``config`` in :data:`KEYS`, for train batches of ``batch``
    agent-steps (default: its ``train_batch_size``)."""
    batch = int(batch or config.train_batch_size_per_learner or config.train_batch_size)
    clip = config.grad_clip
    if clip is not None and config.grad_clip_by != "global_norm":
        clip = f"{clip} by {config.grad_clip_by}"  # never equal to fast PPO's global-norm clip
    entropy = config.entropy_coeff
    if not isinstance(entropy, (int, float)):
        raise ValueError(f"entropy_coeff={entropy!r}: a schedule is not comparable; set one number")
    vf_clip = None if config.vf_clip_param is None or math.isinf(config.vf_clip_param) else float(config.vf_clip_param)
    minibatch = config.minibatch_size or batch
    return {"clip_param": float(config.clip_param), "kl_coeff": float(config.kl_coeff) if config.use_kl_loss else 0.0,
            "value_loss_coeff": float(config.vf_loss_coeff) if config.use_critic else 0.0, "value_loss_clip": vf_clip,
            "grad_clip_global_norm": clip if clip is None or isinstance(clip, str) else float(clip),
            "entropy_coeff": float(entropy), "num_epochs": int(config.num_epochs),
            "minibatches_per_epoch": max(1, math.ceil(batch / minibatch)), "lr": float(config.lr),
            "gamma": float(config.gamma), "lambda": float(config.lambda_)}


def rllib_settings_like(config, batch: int, rllib_batch: int) -> dict[str, Any]:
    """RLlib ``ppo:`` settings that give the objective and optimizer steps of fast PPO's ``config``
    (iterations of ``batch`` agent-steps) on RLlib train batches of ``rllib_batch`` agent-steps: no
    KL term, the squared error unbounded, the same coefficients, clipping, epochs and minibatch
    count (``rllib_batch`` must split into that many equal minibatches)."""
    fast = fast_ppo_objective(config, batch)
    minibatches = fast["minibatches_per_epoch"]
    if rllib_batch % minibatches:
        raise ValueError(f"RLlib's train batch of {rllib_batch} does not split into {minibatches} equal minibatches: "
                         f"pick a multiple of {minibatches}")
    return {"use_kl_loss": False, "kl_coeff": 0.0, "clip_param": fast["clip_param"],
            "vf_loss_coeff": fast["value_loss_coeff"], "vf_clip_param": float("inf"),
            "grad_clip": fast["grad_clip_global_norm"], "grad_clip_by": "global_norm",
            "entropy_coeff": fast["entropy_coeff"], "num_epochs": fast["num_epochs"],
            "train_batch_size": rllib_batch, "minibatch_size": rllib_batch // minibatches, "lr": fast["lr"],
            "gamma": fast["gamma"], "lambda_": fast["lambda"]}


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The :data:`KEYS` on which two descriptions differ (floats compared to 1e-12 relative)."""
    def same(x, y):
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0)
        return x == y

    return [k for k in KEYS if not same(a[k], b[k])]
