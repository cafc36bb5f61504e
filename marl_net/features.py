"""The observation-feature registry and the built-in features (a leaf below every feature module).

A feature is a function ``fn(ctx, layer) -> tensor`` broadcastable to the layer's weight-space
shape ``[E, rows, cols]`` (see ``marl_net.context.StepContext``), registered by name with
:func:`register_feature`; ``global_signal=True`` marks a value that does not depend on the layer
(one scalar per copy, ``[E, 1, 1]``). This module registers the local defaults (weight, last
change, activity statistics, loss signals, position) and the privileged ``gradient``. The
modules that register more (``marl_net.perturbation_features``, ``marl_net.feedback_alignment``,
``marl_net.accumulators``) import this one, and ``marl_net.observations`` (which turns features
into agents' observation arrays) imports them all, so the imports run one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from marl_net.context import StepContext

OBS_LIMIT = 1.0e4  # observations are clipped to [-OBS_LIMIT, OBS_LIMIT]; NaN becomes 0


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    fn: Callable[[StepContext, int], torch.Tensor]
    privileged: bool = False
    global_signal: bool = False  # the same value for every layer: computed once per observation


FEATURES: dict[str, Feature] = {}
# Feature families: resolvers ``fn(name) -> bool`` that register a parametrized feature (such as
# ``ema0.9[gradient]``, ``marl_net.accumulators``) the first time its name is asked for, in any
# process, and return True; or return False for a name not theirs; or raise ValueError naming the fix
# for a malformed name of theirs.
FEATURE_FAMILIES: list[Callable[[str], bool]] = []


def register_feature(name: str, description: str, privileged: bool = False, global_signal: bool = False):
    """Decorator: register ``fn(ctx, layer)`` as observation feature ``name`` (``global_signal``:
    its value does not depend on ``layer``)."""

    def deco(fn):
        if name in FEATURES:
            raise ValueError(f"observation feature {name!r} is already registered")
        FEATURES[name] = Feature(name, description, fn, privileged, global_signal)
        return fn

    return deco


def resolve_feature(name: str) -> Feature | None:
    """The feature registered as ``name``, registering it through its family if needed; None if unknown."""
    if name not in FEATURES:
        for resolver in FEATURE_FAMILIES:
            if resolver(name):
                break
    return FEATURES.get(name)


def is_privileged(name: str) -> bool:
    """Whether feature ``name`` is privileged (not local); False for unknown names."""
    feature = resolve_feature(name)
    return feature is not None and feature.privileged


def _scalar(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, 1)


@register_feature("weight", "the synapse's current weight")
def _weight(ctx, l):
    return ctx.params[l]


@register_feature("prev_delta", "the weight's change at the last step, in units of action_scale "
                                "(without a base rule: the last action)")
def _prev_delta(ctx, l):
    return ctx.delta[l] / ctx.action_scale


def _activity_stats(ctx: StepContext, l: int, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minibatch statistics of ``ctx.pre(l)`` (``side="pre"``) or ``ctx.post(l)`` (``"post"``):
    the mean ``[E, n]``, the centered activity ``[E, B, n]`` and the standard deviation ``[E, n]``.

    Cached per activity tensor: without biases ``post(l)`` and ``pre(l + 1)`` are the same tensor
    and share one entry, so the activity and correlation features compute each statistic once."""
    if side == "post":
        key = f"activity_stats/{l + 1}"
    else:
        key = f"activity_stats/pre{l}" if ctx.spec.bias else f"activity_stats/{l}"

    def compute():
        x = ctx.pre(l) if side == "pre" else ctx.post(l)
        mean = x.mean(1)
        centered = x - mean.unsqueeze(1)
        return mean, centered, centered.pow(2).mean(1).sqrt_()

    return ctx.cached(key, compute)


@register_feature("pre_activity", "presynaptic activity, mean over the minibatch")
def _pre_activity(ctx, l):
    return _activity_stats(ctx, l, "pre")[0].unsqueeze(1)


@register_feature("post_activity", "postsynaptic activity, mean over the minibatch")
def _post_activity(ctx, l):
    return _activity_stats(ctx, l, "post")[0].unsqueeze(2)


@register_feature("pre_post_corr", "correlation of pre- and postsynaptic activity over the minibatch")
def _pre_post_corr(ctx, l):
    def compute():
        _, xc, sx = _activity_stats(ctx, l, "pre")
        _, yc, sy = _activity_stats(ctx, l, "post")
        cov = torch.matmul(yc.transpose(1, 2), xc).div_(xc.shape[1])
        return cov.div_((sx.unsqueeze(1) * sy.unsqueeze(2)).add_(1e-6))

    return ctx.cached(f"pre_post_corr/{l}", compute)


@register_feature("loss", "the current inner loss on the minibatch (global signal)", global_signal=True)
def _loss(ctx, l):
    return _scalar(ctx.loss)


@register_feature("loss_change", "the loss minus the loss before the last step (global signal)", global_signal=True)
def _loss_change(ctx, l):
    return _scalar(ctx.loss - ctx.prev_loss)


@register_feature("rel_loss", "the current inner loss / the loss at the episode's start (global signal)",
                  global_signal=True)
def _rel_loss(ctx, l):
    return _scalar(ctx.loss / ctx.initial_loss.clamp(min=1e-8))


@register_feature("rel_loss_change", "(loss - loss before the last step) / the loss at the episode's start (global)",
                  global_signal=True)
def _rel_loss_change(ctx, l):
    return _scalar((ctx.loss - ctx.prev_loss) / ctx.initial_loss.clamp(min=1e-8))


@register_feature("step_fraction", "steps taken / max_cycles (global signal)", global_signal=True)
def _step_fraction(ctx, l):
    return _scalar(ctx.t.to(ctx.loss.dtype) / ctx.max_cycles)


@register_feature("layer_position", "the synapse's weight layer, 0 for the first and 1 for the last")
def _layer_position(ctx, l):
    return ctx.loss.new_full((1, 1, 1), l / max(ctx.spec.num_layers - 1, 1))


@register_feature("gradient", "backprop gradient dE/dw on the minibatch (privileged: not local)", privileged=True)
def _gradient(ctx, l):
    return ctx.gradient()[l]


def sanitize(x: torch.Tensor) -> torch.Tensor:
    """NaN -> 0, everything else clipped to [-OBS_LIMIT, OBS_LIMIT] (infinities included)."""
    return torch.nan_to_num(x, nan=0.0, posinf=OBS_LIMIT, neginf=-OBS_LIMIT).clamp_(-OBS_LIMIT, OBS_LIMIT)
